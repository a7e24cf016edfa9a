package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCompileRateLimitPrecedence(t *testing.T) {
	dir := testDirectory(t)
	system := []SystemUser{{Name: "Debian-exim", Reason: "MTA exim4"}, {Name: "list", Reason: "list manager"}}
	r := func(s string) RateSetting {
		t.Helper()
		rs, err := ParseRateSetting(s)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	rate := func(s string) Rate { return r(s).Rate }
	user := func(name string, id uint32, rs string) Principal {
		return Principal{Kind: KindUser, Name: name, ID: id, Rate: r(rs)}
	}
	mailers := func(rs string) Principal { return Principal{Kind: KindGroup, Name: "mailers", ID: 2000, Rate: r(rs)} }
	exc := func(p Principal, rs string) Exception {
		return Exception{Principal: p, Destination: "192.0.2.2", Rate: r(rs)}
	}
	for _, tt := range []struct {
		name string
		edit func(p *Policy)
		want []UIDRate
	}{
		{"no rates, no limits", func(p *Policy) {
			p.Users = []Principal{user("alice", 1001, "")}
		}, nil},
		{"the default limits every allowance", func(p *Policy) {
			p.RateLimit = rate("100/h")
			p.Users = []Principal{user("alice", 1001, "")}
			p.Groups = []Principal{mailers("")}                         // bob (primary), carol (member)
			p.Exceptions = []Exception{exc(user("dave", 1004, ""), "")} // exception only
		}, []UIDRate{{1001, rate("100/h")}, {1002, rate("100/h")}, {1003, rate("100/h")}, {1004, rate("100/h")}}},
		{"own user rate beats a tighter group and the default", func(p *Policy) {
			p.RateLimit = rate("1/m")
			p.Users = []Principal{user("bob", 1002, "50/h")}
			p.Groups = []Principal{mailers("2/h")}
		}, []UIDRate{{1002, rate("50/h")}, {1003, rate("2/h")}}},
		{"own off beats the default", func(p *Policy) {
			p.RateLimit = rate("10/m")
			p.Users = []Principal{user("alice", 1001, "off"), user("dave", 1004, "")}
		}, []UIDRate{{1004, rate("10/m")}}},
		{"tightest of groups and exceptions", func(p *Policy) {
			p.RateLimit = rate("1000/h")
			p.Users = []Principal{user("carol", 1003, "")} // own allowance without a rate
			p.Groups = []Principal{mailers("30/h")}
			p.Exceptions = []Exception{exc(user("carol", 1003, ""), "20/h"), exc(mailers(""), "off")}
		}, []UIDRate{{1002, rate("30/h")}, {1003, rate("20/h")}}},
		{"same sustained rate: the smaller burst is tighter", func(p *Policy) {
			p.Groups = []Principal{mailers("60/h")}
			p.Exceptions = []Exception{exc(user("bob", 1002, ""), "1/m")}
		}, []UIDRate{{1002, rate("1/m")}, {1003, rate("60/h")}}},
		{"all off among groups: no limit despite the default", func(p *Policy) {
			p.RateLimit = rate("5/m")
			p.Groups = []Principal{mailers("off")}
		}, nil},
		{"root, the MTA and the list manager are never limited", func(p *Policy) {
			p.RateLimit = rate("5/m")
			p.Users = []Principal{user("root", 0, "1/m"), user("Debian-exim", 101, "1/m"), user("list", 38, ""), user("alice", 1001, "")}
			p.Exceptions = []Exception{exc(user("root", 0, ""), "1/s")}
		}, []UIDRate{{1001, rate("5/m")}}},
		{"a uid allowed by number", func(p *Policy) {
			p.RateLimit = rate("5/m")
			p.Users = []Principal{{Kind: KindUser, ID: 4242, ByID: true}}
		}, []UIDRate{{4242, rate("5/m")}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := Default()
			tt.edit(&p)
			if err := Validate(p, dir); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			rs := Compile(p, Resolve(p, dir, system))
			if diff := cmp.Diff(tt.want, rs.RateLimits); diff != "" {
				t.Errorf("RateLimits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTraceRateLimited(t *testing.T) {
	rs := Ruleset{Mode: ModeReject, Ports: []uint16{25}, AllowLocal: true, UIDs: []uint32{0, 1001, 1002},
		RateLimits: []UIDRate{{1001, Rate{5, time.Minute}}}}
	for _, tt := range []struct {
		pkt  Packet
		want Verdict
	}{
		{Packet{UID: 1001, DstPort: 25}, VerdictAccept},
		{Packet{UID: 1001, DstPort: 25, OverRate: true}, VerdictReject},
		{Packet{UID: 1001, DstPort: 25, OverRate: true, DstLocal: true}, VerdictAccept}, // local delivery
		{Packet{UID: 1001, DstPort: 80, OverRate: true}, VerdictAccept},                 // not restricted
		{Packet{UID: 1002, DstPort: 25, OverRate: true}, VerdictAccept},                 // no limit
	} {
		if got := rs.Trace(tt.pkt); got != tt.want {
			t.Errorf("Trace(%+v) = %s, want %s", tt.pkt, got, tt.want)
		}
	}
	rs.Mode = ModeLog
	if got := rs.Trace(Packet{UID: 1001, DstPort: 25, OverRate: true}); got != VerdictLog {
		t.Errorf("log mode: Trace(over rate) = %s, want log", got)
	}
}

func TestPolicyFileRates(t *testing.T) {
	dir := testDirectory(t)
	src := `version = 1
enabled = true
mode = "reject"
ports = [25]
allow_local = true
allowed_users = ["alice", "1006"]
allowed_groups = ["mailers"]
rate_limit = "100/h"
user_rates = { alice = "5/m", "1006" = "off" }
group_rates = { mailers = "10/m" }
[[exceptions]]
user = "dave"
to = "192.0.2.2"
rate = "2/s"
`
	f, err := DecodeFile([]byte(src), FormatTOML)
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Policy(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"5/m", "off"}
	for i, u := range p.Users {
		if u.Rate.String() != want[i] {
			t.Errorf("users[%d] rate = %q, want %q", i, u.Rate, want[i])
		}
	}
	if p.Groups[0].Rate.String() != "10/m" || p.Exceptions[0].Rate.String() != "2/s" || p.RateLimit.String() != "100/h" {
		t.Errorf("rates = group %q, exception %q, default %q; want 10/m, 2/s, 100/h", p.Groups[0].Rate, p.Exceptions[0].Rate, p.RateLimit)
	}
	for _, format := range []Format{FormatTOML, FormatYAML} {
		out, err := ToFile(p).Encode(format)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeFile(out, format)
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, out)
		}
		q, err := back.Policy(dir)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if !q.Equal(p) {
			t.Errorf("%s round trip changed the policy:\n%s", format, out)
		}
	}
	bad := strings.Replace(src, `group_rates = { mailers = "10/m" }`, `group_rates = { ops = "10/m" }`, 1)
	if f, err := DecodeFile([]byte(bad), FormatTOML); err != nil {
		t.Fatal(err)
	} else if _, err := f.Policy(dir); err == nil || !strings.Contains(err.Error(), "group_rates.ops: not in the allowed list") {
		t.Errorf("a rate for a group not allowed: %v, want an error naming it", err)
	}
}
