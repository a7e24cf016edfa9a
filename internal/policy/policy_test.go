package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParsePortsAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []uint16
	}{
		{name: "defaults", in: "25,465,587", want: []uint16{25, 465, 587}},
		{name: "unsorted input is sorted", in: "587,25,465", want: []uint16{25, 465, 587}},
		{name: "whitespace around list and entries", in: " 587, 25 ", want: []uint16{25, 587}},
		{name: "tabs and newlines", in: "\t25 ,\n2525\n", want: []uint16{25, 2525}},
		{name: "single port", in: "2525", want: []uint16{2525}},
		{name: "lowest port", in: "1", want: []uint16{1}},
		{name: "highest port", in: "65535", want: []uint16{65535}},
		{name: "both edges", in: "65535,1", want: []uint16{1, 65535}},
		{name: "leading zeros", in: "025", want: []uint16{25}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePorts(tt.in)
			if err != nil {
				t.Fatalf("ParsePorts(%q) = %v, want %v", tt.in, err, tt.want)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParsePorts(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
			// What the CLI prints must parse back to the same list.
			if again, err := ParsePorts(PortsString(got)); err != nil || !cmp.Equal(again, got) {
				t.Errorf("ParsePorts(PortsString(%v)) = %v, %v, want %v, nil", got, again, err, got)
			}
		})
	}
}

func TestParsePortsRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // the offending value must appear in the message
	}{
		{name: "empty", in: "", wantErr: "no ports given"},
		{name: "blank", in: "   ", wantErr: "no ports given"},
		{name: "zero", in: "0", wantErr: "port 0 is outside 1-65535"},
		{name: "zero among valid", in: "25,0", wantErr: "port 0 is outside"},
		{name: "just above range", in: "65536", wantErr: "port 65536 is outside 1-65535"},
		{name: "far above range", in: "70000", wantErr: "port 70000 is outside"},
		{name: "beyond 64 bits", in: "99999999999999999999", wantErr: `"99999999999999999999" is not a number`},
		{name: "negative", in: "-1", wantErr: `port "-1" is not a number`},
		{name: "plus sign", in: "+25", wantErr: `port "+25" is not a number`},
		{name: "word", in: "abc", wantErr: `port "abc" is not a number`},
		{name: "service name", in: "25,smtp", wantErr: `port "smtp" is not a number`},
		{name: "empty entry", in: "25,,465", wantErr: `empty entry in port list "25,,465"`},
		{name: "trailing comma", in: "25,", wantErr: `empty entry in port list "25,"`},
		{name: "leading comma", in: ",25", wantErr: "empty entry"},
		{name: "duplicate", in: "25,25", wantErr: "port 25 is listed twice"},
		{name: "duplicate after sorting", in: "587,25,587", wantErr: "port 587 is listed twice"},
		{name: "duplicate with leading zero", in: "25,025", wantErr: "port 25 is listed twice"},
		{name: "semicolon separator", in: "25;465", wantErr: `port "25;465" is not a number`},
		{name: "space separator", in: "25 465", wantErr: `port "25 465" is not a number`},
		{name: "range syntax", in: "25-30", wantErr: `port "25-30" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePorts(tt.in)
			if err == nil {
				t.Fatalf("ParsePorts(%q) = %v, nil, want error containing %q", tt.in, got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePorts(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("ParsePorts(%q) = %v with an error, want nil ports", tt.in, got)
			}
		})
	}
}

func TestParsePortsHugeNumberNamesIt(t *testing.T) {
	for _, in := range []string{"18446744073709551615", "9223372036854775833"} {
		_, err := ParsePorts(in)
		if err == nil || !strings.Contains(err.Error(), in) {
			t.Errorf("ParsePorts(%q) = %v, want an error naming %s", in, err, in)
		}
	}
}

func TestPortsString(t *testing.T) {
	tests := []struct {
		name  string
		ports []uint16
		want  string
	}{
		{name: "none", ports: nil, want: ""},
		{name: "one", ports: []uint16{25}, want: "25"},
		{name: "defaults", ports: DefaultPorts(), want: "25,465,587,2525"},
		{name: "legacy", ports: LegacyPorts(), want: "25,465,587"},
		{name: "edges", ports: []uint16{1, 65535}, want: "1,65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PortsString(tt.ports); got != tt.want {
				t.Errorf("PortsString(%v) = %q, want %q", tt.ports, got, tt.want)
			}
		})
	}
}

func TestDefaultPortsIsACopy(t *testing.T) {
	p := DefaultPorts()
	p[0] = 2526
	if got := DefaultPorts(); got[0] != 25 {
		t.Errorf("DefaultPorts() = %v after a caller edited an earlier result, want 25 first", got)
	}
	l := LegacyPorts()
	l[0] = 2526
	if got := LegacyPorts(); !cmp.Equal(got, []uint16{25, 465, 587}) {
		t.Errorf("LegacyPorts() = %v after a caller edited an earlier result, want [25 465 587]", got)
	}
	d := Default()
	d.Ports[0] = 2526
	if got := Default().Ports; !cmp.Equal(got, []uint16{25, 465, 587, 2525}) {
		t.Errorf("Default().Ports = %v after a caller edited an earlier default, want [25 465 587 2525]", got)
	}
}

func TestDefault(t *testing.T) {
	want := Policy{Backend: BackendAuto, Mode: ModeReject, Ports: []uint16{25, 465, 587, 2525}, AllowLocal: true}
	if diff := cmp.Diff(want, Default()); diff != "" {
		t.Errorf("Default() mismatch (-want +got):\n%s", diff)
	}
	if err := Validate(Default(), NewDirectory(nil, nil)); err != nil {
		t.Errorf("Validate(Default(), empty directory) = %v, want nil", err)
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr []string
	}{
		{in: "reject", want: ModeReject},
		{in: "log", want: ModeLog},
		{in: "LOG", want: ModeLog},
		{in: "Reject", want: ModeReject},
		{in: "  log\n", want: ModeLog},
		{in: "redirect", want: ModeRedirect},
		{in: "REDIRECT", want: ModeRedirect},
		{in: "explain", want: ModeExplain},
		{in: " Explain", want: ModeExplain},
		{in: "bogus", wantErr: []string{`unknown mode "bogus"`, "use reject, redirect, explain or log"}},
		{in: "drop", wantErr: []string{`unknown mode "drop"`}},
		{in: "", wantErr: []string{`unknown mode ""`}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ParseMode(%q) = %q, nil, want error", tt.in, got)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("ParseMode(%q) error = %q, want it to contain %q", tt.in, err, want)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseMode(%q) = %q, %v, want %q, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseOnOff(t *testing.T) {
	tests := []struct {
		in      string
		want    bool
		wantErr bool
	}{
		{in: "on", want: true},
		{in: "ON", want: true},
		{in: " yes ", want: true},
		{in: "true", want: true},
		{in: "1", want: true},
		{in: "enable", want: true},
		{in: "Enabled", want: true},
		{in: "off", want: false},
		{in: "no", want: false},
		{in: "FALSE", want: false},
		{in: "0", want: false},
		{in: "disable", want: false},
		{in: "disabled\n", want: false},
		{in: "maybe", wantErr: true},
		{in: "", wantErr: true},
		{in: "2", wantErr: true},
		{in: "o n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseOnOff(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseOnOff(%q) = %t, nil, want error", tt.in, got)
				}
				if want := "invalid value"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "use on or off") {
					t.Errorf("ParseOnOff(%q) error = %q, want %q and advice to use on or off", tt.in, err, want)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseOnOff(%q) = %t, %v, want %t, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestPrincipalRefAndString(t *testing.T) {
	tests := []struct {
		name    string
		pr      Principal
		wantRef string
		wantStr string
	}{
		{name: "user by name", pr: Principal{Kind: KindUser, Name: "alice", ID: 1001}, wantRef: "alice", wantStr: "user alice"},
		{name: "user by id with account", pr: Principal{Kind: KindUser, Name: "alice", ID: 1001, ByID: true}, wantRef: "1001", wantStr: "user 1001"},
		{name: "group by id without entry", pr: Principal{Kind: KindGroup, ID: 4000, ByID: true}, wantRef: "4000", wantStr: "group 4000"},
		{name: "root by id", pr: Principal{Kind: KindUser, Name: "root", ByID: true}, wantRef: "0", wantStr: "user 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pr.Ref(); got != tt.wantRef {
				t.Errorf("%+v.Ref() = %q, want %q", tt.pr, got, tt.wantRef)
			}
			if got := tt.pr.String(); got != tt.wantStr {
				t.Errorf("%+v.String() = %q, want %q", tt.pr, got, tt.wantStr)
			}
		})
	}
}

func TestPrincipalSame(t *testing.T) {
	alice := Principal{Kind: KindUser, Name: "alice", ID: 1001}
	tests := []struct {
		name string
		p, q Principal
		want bool
	}{
		{name: "same name", p: alice, q: alice, want: true},
		{name: "same name renumbered", p: alice, q: Principal{Kind: KindUser, Name: "alice", ID: 2001}, want: true},
		{name: "name against its uid", p: alice, q: Principal{Kind: KindUser, ID: 1001, ByID: true}, want: true},
		{name: "uid against the name", p: Principal{Kind: KindUser, ID: 1001, ByID: true}, q: alice, want: true},
		{name: "different uids", p: Principal{Kind: KindUser, ID: 1001, ByID: true}, q: Principal{Kind: KindUser, ID: 1002, ByID: true}, want: false},
		{name: "different names", p: alice, q: Principal{Kind: KindUser, Name: "bob", ID: 1002}, want: false},
		{name: "two names sharing a uid", p: Principal{Kind: KindUser, Name: "root"}, q: Principal{Kind: KindUser, Name: "toor"}, want: false},
		{name: "user and group of the same name", p: alice, q: Principal{Kind: KindGroup, Name: "alice", ID: 1001}, want: false},
		{name: "user and group of the same id", p: Principal{Kind: KindUser, ID: 7, ByID: true}, q: Principal{Kind: KindGroup, ID: 7, ByID: true}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Same(tt.q); got != tt.want {
				t.Errorf("%v.Same(%v) = %t, want %t", tt.p, tt.q, got, tt.want)
			}
		})
	}
}

func TestAllowRefusesDuplicates(t *testing.T) {
	alice := Principal{Kind: KindUser, Name: "alice", ID: 1001}
	alice1001 := Principal{Kind: KindUser, Name: "alice", ID: 1001, ByID: true}
	uid4242 := Principal{Kind: KindUser, ID: 4242, ByID: true}
	mailers := Principal{Kind: KindGroup, Name: "mailers", ID: 2000}
	tests := []struct {
		name    string
		start   []Principal
		add     Principal
		wantErr error
		wantMsg string
	}{
		{name: "new user", add: alice},
		{name: "same name twice", start: []Principal{alice}, add: alice, wantErr: ErrAlreadyAllowed, wantMsg: "user alice: already allowed"},
		{name: "uid of an allowed name", start: []Principal{alice}, add: alice1001, wantErr: ErrAlreadyAllowed, wantMsg: "user 1001"},
		{name: "name of an allowed uid", start: []Principal{alice1001}, add: alice, wantErr: ErrAlreadyAllowed, wantMsg: "user alice"},
		{name: "same uid twice", start: []Principal{uid4242}, add: uid4242, wantErr: ErrAlreadyAllowed, wantMsg: "user 4242"},
		{name: "group with a user's name", start: []Principal{alice}, add: Principal{Kind: KindGroup, Name: "alice", ID: 1001}},
		{name: "same group twice", start: []Principal{mailers}, add: mailers, wantErr: ErrAlreadyAllowed, wantMsg: "group mailers"},
		{name: "gid of an allowed group", start: []Principal{mailers}, add: Principal{Kind: KindGroup, ID: 2000, ByID: true}, wantErr: ErrAlreadyAllowed, wantMsg: "group 2000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Default()
			for _, pr := range tt.start {
				if err := p.Allow(pr); err != nil {
					t.Fatalf("Allow(%v) = %v, want nil", pr, err)
				}
			}
			before := p.Clone()
			err := p.Allow(tt.add)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Allow(%v) = %v, want nil", tt.add, err)
				}
				got := p.Users
				if tt.add.Kind == KindGroup {
					got = p.Groups
				}
				if len(got) == 0 || got[len(got)-1] != tt.add {
					t.Errorf("Allow(%v) left the list as %v, want it appended", tt.add, got)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Allow(%v) = %v, want %v", tt.add, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Allow(%v) error = %q, want it to name %q", tt.add, err, tt.wantMsg)
			}
			if diff := cmp.Diff(before, p); diff != "" {
				t.Errorf("Allow(%v) changed the policy despite the error (-want +got):\n%s", tt.add, diff)
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	alice := Principal{Kind: KindUser, Name: "alice", ID: 1001}
	bob := Principal{Kind: KindUser, Name: "bob", ID: 1002}
	uid4242 := Principal{Kind: KindUser, ID: 4242, ByID: true}
	mailers := Principal{Kind: KindGroup, Name: "mailers", ID: 2000}
	tests := []struct {
		name       string
		revoke     Principal
		wantErr    error
		wantUsers  []Principal
		wantGroups []Principal
	}{
		{name: "by name", revoke: alice, wantUsers: []Principal{bob, uid4242}, wantGroups: []Principal{mailers}},
		{name: "name by its uid", revoke: Principal{Kind: KindUser, ID: 1002, ByID: true}, wantUsers: []Principal{alice, uid4242}, wantGroups: []Principal{mailers}},
		{name: "uid", revoke: uid4242, wantUsers: []Principal{alice, bob}, wantGroups: []Principal{mailers}},
		{name: "group by gid", revoke: Principal{Kind: KindGroup, ID: 2000, ByID: true}, wantUsers: []Principal{alice, bob, uid4242}},
		{name: "not allowed", revoke: Principal{Kind: KindUser, Name: "carol", ID: 1003}, wantErr: ErrNotAllowed, wantUsers: []Principal{alice, bob, uid4242}, wantGroups: []Principal{mailers}},
		{name: "user named like an allowed group", revoke: Principal{Kind: KindUser, Name: "mailers", ID: 2000}, wantErr: ErrNotAllowed, wantUsers: []Principal{alice, bob, uid4242}, wantGroups: []Principal{mailers}},
		{name: "group named like an allowed user", revoke: Principal{Kind: KindGroup, Name: "alice", ID: 1001}, wantErr: ErrNotAllowed, wantUsers: []Principal{alice, bob, uid4242}, wantGroups: []Principal{mailers}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Default()
			p.Users = []Principal{alice, bob, uid4242}
			p.Groups = []Principal{mailers}
			err := p.Revoke(tt.revoke)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Revoke(%v) = %v, want %v", tt.revoke, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.revoke.String()) {
				t.Errorf("Revoke(%v) error = %q, want it to name %q", tt.revoke, err, tt.revoke)
			}
			if diff := cmp.Diff(tt.wantUsers, p.Users, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Revoke(%v) users (-want +got):\n%s", tt.revoke, diff)
			}
			if diff := cmp.Diff(tt.wantGroups, p.Groups, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Revoke(%v) groups (-want +got):\n%s", tt.revoke, diff)
			}
		})
	}
}

func TestAllowThenRevokeThenAllow(t *testing.T) {
	p := Default()
	alice := Principal{Kind: KindUser, Name: "alice", ID: 1001}
	if err := p.Allow(alice); err != nil {
		t.Fatalf("Allow(alice) = %v", err)
	}
	if err := p.Revoke(alice); err != nil {
		t.Fatalf("Revoke(alice) = %v", err)
	}
	if err := p.Revoke(alice); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("second Revoke(alice) = %v, want ErrNotAllowed", err)
	}
	if err := p.Allow(alice); err != nil {
		t.Errorf("Allow(alice) after revoking = %v, want nil", err)
	}
}

func TestCloneDoesNotAlias(t *testing.T) {
	orig := Policy{
		Enabled: true, Backend: "nft", Mode: ModeLog, AllowLocal: true,
		Ports:  []uint16{25, 465, 587},
		Users:  []Principal{{Kind: KindUser, Name: "alice", ID: 1001}},
		Groups: []Principal{{Kind: KindGroup, Name: "mailers", ID: 2000}},
	}
	want := Policy{
		Enabled: true, Backend: "nft", Mode: ModeLog, AllowLocal: true,
		Ports:  []uint16{25, 465, 587},
		Users:  []Principal{{Kind: KindUser, Name: "alice", ID: 1001}},
		Groups: []Principal{{Kind: KindGroup, Name: "mailers", ID: 2000}},
	}
	c := orig.Clone()
	if diff := cmp.Diff(orig, c); diff != "" {
		t.Fatalf("Clone() differs from the original (-orig +clone):\n%s", diff)
	}
	c.Ports[0] = 2525
	c.Users[0].Name = "mallory"
	c.Groups[0].ID = 9
	c.Enabled = false
	if err := c.Revoke(Principal{Kind: KindUser, Name: "mallory"}); err != nil {
		t.Fatalf("Revoke(mallory) on the clone = %v", err)
	}
	if err := c.Allow(Principal{Kind: KindUser, Name: "bob", ID: 1002}); err != nil {
		t.Fatalf("Allow(bob) on the clone = %v", err)
	}
	if diff := cmp.Diff(want, orig); diff != "" {
		t.Errorf("editing a Clone() changed the original (-want +got):\n%s", diff)
	}
}

func TestPolicyEqual(t *testing.T) {
	base := func() Policy {
		p := Default()
		p.Users = []Principal{{Kind: KindUser, Name: "alice", ID: 1001}, {Kind: KindUser, ID: 4242, ByID: true}}
		p.Groups = []Principal{{Kind: KindGroup, Name: "mailers", ID: 2000}}
		return p
	}
	tests := []struct {
		name   string
		change func(*Policy)
		want   bool
	}{
		{name: "identical", change: func(*Policy) {}, want: true},
		{name: "empty versus nil lists", change: func(p *Policy) { p.Users, p.Groups = nil, nil }, want: false},
		{name: "enabled", change: func(p *Policy) { p.Enabled = true }, want: false},
		{name: "backend", change: func(p *Policy) { p.Backend = "nft" }, want: false},
		{name: "mode", change: func(p *Policy) { p.Mode = ModeLog }, want: false},
		{name: "allow local", change: func(p *Policy) { p.AllowLocal = false }, want: false},
		{name: "ports", change: func(p *Policy) { p.Ports = []uint16{25} }, want: false},
		{name: "user order", change: func(p *Policy) { p.Users[0], p.Users[1] = p.Users[1], p.Users[0] }, want: false},
		{name: "user by id instead of name", change: func(p *Policy) { p.Users[0].ByID = true }, want: false},
		{name: "group", change: func(p *Policy) { p.Groups = nil }, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, q := base(), base()
			tt.change(&q)
			if got := p.Equal(q); got != tt.want {
				t.Errorf("Equal() after changing %s = %t, want %t", tt.name, got, tt.want)
			}
			if got := q.Equal(p); got != tt.want {
				t.Errorf("Equal() after changing %s, swapped = %t, want %t", tt.name, got, tt.want)
			}
		})
	}
	empty := Default()
	empty.Users = []Principal{}
	if !Default().Equal(empty) {
		t.Errorf("Default().Equal(Default() with empty users) = false, want true: an empty list equals none")
	}
}

func TestValidate(t *testing.T) {
	dir := testDirectory(t)
	alice := Principal{Kind: KindUser, Name: "alice", ID: 1001}
	tests := []struct {
		name    string
		change  func(*Policy)
		wantErr []string // one entry per problem, each must be reported; nil means valid
	}{
		{name: "default", change: func(*Policy) {}},
		{name: "everything valid", change: func(p *Policy) {
			p.Enabled, p.Backend, p.Mode, p.Ports = true, "nft", ModeLog, []uint16{25, 2525}
			p.Users = []Principal{alice, {Kind: KindUser, ID: 4242, ByID: true}}
			p.Groups = []Principal{{Kind: KindGroup, Name: "mailers", ID: 2000}, {Kind: KindGroup, ID: 4000, ByID: true}}
		}},
		{name: "redirect mode", change: func(p *Policy) { p.Mode = ModeRedirect }},
		{name: "unknown mode", change: func(p *Policy) { p.Mode = "drop" }, wantErr: []string{`mode: unknown mode "drop"`}},
		{name: "empty mode", change: func(p *Policy) { p.Mode = "" }, wantErr: []string{"mode: "}},
		{name: "empty backend", change: func(p *Policy) { p.Backend = "" }, wantErr: []string{`backend: invalid backend name "": use auto or a backend's name`}},
		{name: "uppercase backend", change: func(p *Policy) { p.Backend = "NFT" }, wantErr: []string{`backend: invalid backend name "NFT"`}},
		{name: "backend with punctuation", change: func(p *Policy) { p.Backend = "nft;rm" }, wantErr: []string{"backend: "}},
		{name: "long backend", change: func(p *Policy) { p.Backend = strings.Repeat("a", 33) }, wantErr: []string{"backend: "}},
		{name: "no ports", change: func(p *Policy) { p.Ports = nil }, wantErr: []string{"ports: no ports given"}},
		{name: "duplicate ports", change: func(p *Policy) { p.Ports = []uint16{587, 25, 587} }, wantErr: []string{"ports: port 587 is listed twice"}},
		{name: "user without account", change: func(p *Policy) {
			p.Users = []Principal{alice, {Kind: KindUser, Name: "ghost", ID: 1500}}
		}, wantErr: []string{`allowed_users[1]: no such user "ghost"`}},
		{name: "user listed twice", change: func(p *Policy) {
			p.Users = []Principal{alice, {Kind: KindUser, Name: "bob", ID: 1002}, {Kind: KindUser, ID: 1001, ByID: true}}
		}, wantErr: []string{"allowed_users[2]: user 1001 is listed twice"}},
		{name: "group without entry", change: func(p *Policy) {
			p.Groups = []Principal{{Kind: KindGroup, Name: "oldteam", ID: 5000}}
		}, wantErr: []string{`allowed_groups[0]: no such group "oldteam"`}},
		{name: "group listed twice", change: func(p *Policy) {
			p.Groups = []Principal{{Kind: KindGroup, Name: "mailers", ID: 2000}, {Kind: KindGroup, Name: "mailers", ID: 2000}}
		}, wantErr: []string{"allowed_groups[1]: group mailers is listed twice"}},
		{name: "uid -1", change: func(p *Policy) {
			p.Users = []Principal{{Kind: KindUser, ID: 4294967295, ByID: true}}
		}, wantErr: []string{"allowed_users[0]: user id 4294967295 is outside"}},
		{name: "every problem at once", change: func(p *Policy) {
			p.Mode = "drop"
			p.Backend = "Bad!"
			p.Ports = []uint16{25, 25}
			p.Users = []Principal{alice, {Kind: KindUser, Name: "ghost"}, alice}
			p.Groups = []Principal{{Kind: KindGroup, Name: "nogroup"}}
		}, wantErr: []string{
			"mode: ",
			"backend: ",
			"ports: port 25 is listed twice",
			`allowed_users[1]: no such user "ghost"`,
			"allowed_users[2]: user alice is listed twice",
			`allowed_groups[0]: no such group "nogroup"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Default()
			tt.change(&p)
			err := Validate(p, dir)
			if tt.wantErr == nil {
				if err != nil {
					t.Errorf("Validate(%+v) = %v, want nil", p, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want errors %q", p, tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
			// One line per problem, so an administrator sees them all.
			if got := len(strings.Split(err.Error(), "\n")); got != len(tt.wantErr) {
				t.Errorf("Validate() reported %d problems, want %d:\n%v", got, len(tt.wantErr), err)
			}
		})
	}
}

func TestValidateRejectsNonCanonicalMode(t *testing.T) {
	for _, m := range []Mode{"LOG", "Reject", " log"} {
		p := Default()
		p.Mode = m
		if err := Validate(p, NewDirectory(nil, nil)); err == nil {
			t.Errorf("Validate(mode %q) = nil, want an error: Trace would enforce it as %s", m, Compile(p, Resolution{}).Trace(Packet{UID: 1000, DstPort: 25}))
		}
	}
}
