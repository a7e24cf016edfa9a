//go:build linux

package nft

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current rendering")

func testRulesets() map[string]policy.Ruleset {
	return map[string]policy.Ruleset{
		"reject_default": {Mode: policy.ModeReject, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: []uint32{0, 101, 1001}},
		"log_mode":       {Mode: policy.ModeLog, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: []uint32{0}},
		"no_local":       {Mode: policy.ModeReject, Ports: []uint16{25, 2525}, AllowLocal: false, UIDs: []uint32{0, 38}},
		"exceptions": {Mode: policy.ModeReject, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: []uint32{0},
			Exceptions: []policy.ExceptionRule{
				{UID: 1001, Dst: netip.MustParsePrefix("192.0.2.2/32"), Port: 587},
				{UID: 1001, Dst: netip.MustParsePrefix("198.51.100.0/24"), Port: 25},
				{UID: 1002, Dst: netip.MustParsePrefix("2001:db8::2/128"), Port: 587},
				{UID: 1002, Dst: netip.MustParsePrefix("2001:db8:1::/48"), Port: 465},
			}},
		"redirect": {Mode: policy.ModeRedirect, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: []uint32{0, 101}},
		"explain": {Mode: policy.ModeExplain, Ports: []uint16{25, 465, 587, 2525}, AllowLocal: true, UIDs: []uint32{0, 101},
			ExplainPort: policy.DefaultExplainPort},
		"rate_limits": {Mode: policy.ModeReject, Ports: []uint16{25, 587}, AllowLocal: true, UIDs: []uint32{0, 101, 1001, 1003},
			Exceptions: []policy.ExceptionRule{{UID: 1002, Dst: netip.MustParsePrefix("192.0.2.2/32"), Port: 587}},
			RateLimits: []policy.UIDRate{{UID: 1001, Rate: policy.Rate{Count: 5, Period: time.Minute}},
				{UID: 1002, Rate: policy.Rate{Count: 100, Period: time.Hour}}, {UID: 1003, Rate: policy.Rate{Count: 5, Period: time.Minute}}}},
		"rate_limits_log": {Mode: policy.ModeLog, Ports: []uint16{25}, AllowLocal: false, UIDs: []uint32{0, 1001},
			RateLimits: []policy.UIDRate{{UID: 1001, Rate: policy.Rate{Count: 2, Period: time.Second}}}},
		"rate_limits_redirect": {Mode: policy.ModeRedirect, Ports: []uint16{25}, AllowLocal: true, UIDs: []uint32{0, 1001},
			RateLimits: []policy.UIDRate{{UID: 1001, Rate: policy.Rate{Count: 1, Period: 24 * time.Hour}}}},
		"rate_limits_explain": {Mode: policy.ModeExplain, Ports: []uint16{25, 465}, AllowLocal: true, UIDs: []uint32{0, 1001},
			RateLimits: []policy.UIDRate{{UID: 1001, Rate: policy.Rate{Count: 3, Period: time.Minute}}}, ExplainPort: policy.DefaultExplainPort},
	}
}

// testLogGroup is the NFLOG group testRulesets()[name] is rendered with.
func testLogGroup(name string) uint16 {
	if name == "no_local" {
		return 7 // the group is the backend's configuration, not the default
	}
	return DefaultLogGroup
}

func TestRenderGolden(t *testing.T) {
	for name, rs := range testRulesets() {
		t.Run(name, func(t *testing.T) {
			got := render(rs, testLogGroup(name))
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (regenerate with go test -update): %v", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("render(%s) (-want +got):\n%s", name, diff)
			}
		})
	}
}

// The rules Apply sends implement policy.Ruleset.Trace: every packet of a
// grid of users, ports, destinations, local or not, with or without a
// routing header, gets the tracer's verdict from the rules' expressions (run
// by vm), in every mode. TestPrivilegedTracerMatchesKernel checks the same
// against the kernel.
func TestRuleOrderMatchesTracer(t *testing.T) {
	dsts := []string{"192.0.2.2", "198.51.100.7", "203.0.113.1", "2001:db8::2", "2001:db8:1::5", "2001:db8:2::1",
		"::ffff:198.51.100.7", "::ffff:192.0.2.2", "127.0.0.1", "::1"}
	for name, rs := range testRulesets() {
		t.Run(name, func(t *testing.T) {
			m := newVM(rs)
			uids := []uint32{0, 1, 101, 1001, 1002, 1003, 4242, 65534}
			ports := []uint16{22, 25, 443, 465, 587, 2525}
			for _, e := range rs.Exceptions {
				uids = append(uids, e.UID)
				ports = append(ports, e.Port)
			}
			uids = append(uids, rs.UIDs...)
			ports = append(ports, rs.Ports...)
			seen := map[policy.Verdict]int{}
			for _, uid := range uids {
				for _, port := range ports {
					for _, d := range dsts {
						dst := netip.MustParseAddr(d)
						for _, local := range []bool{false, true} {
							for _, rthdr := range []bool{false, true} {
								if rthdr && dst.Unmap().Is4() {
									continue // IPv4-mapped sockets send IPv4 packets
								}
								for _, over := range []bool{false, true} {
									pkt := policy.Packet{UID: uid, Dst: dst, DstPort: port, DstLocal: local, RoutingHeader: rthdr, OverRate: over}
									want := rs.Trace(pkt)
									vp := vmPacket{uid: uid, dst: dst.Unmap(), dport: port, tcpFlags: tcpSYN, local: local, rthdr: rthdr, overRate: over}
									got, err := m.verdict(rs, vp)
									if err != nil {
										t.Fatalf("%+v: %v", pkt, err)
									}
									if got != want {
										t.Errorf("%+v: rules give %s, tracer %s", pkt, got, want)
									}
									seen[want]++
									// Only a connection's first packet is judged.
									vp.tcpFlags = tcpACK
									if !natMode(rs.Mode) {
										if got, err := m.verdict(rs, vp); err != nil || got != policy.VerdictAccept {
											t.Errorf("%+v as an ACK: rules give %s (%v), want accept", pkt, got, err)
										}
									}
								}
							}
						}
					}
				}
			}
			blocked := map[policy.Mode]policy.Verdict{policy.ModeReject: policy.VerdictReject, policy.ModeLog: policy.VerdictLog, policy.ModeRedirect: policy.VerdictRedirect, policy.ModeExplain: policy.VerdictExplain}[rs.Mode]
			if seen[policy.VerdictAccept] == 0 || seen[blocked] == 0 {
				t.Errorf("verdicts seen %v: the grid misses accepted or blocked packets", seen)
			}
		})
	}
}

func TestCommentsFingerprintRuleMeaning(t *testing.T) {
	rs := testRulesets()["reject_default"]
	logRS := rs
	logRS.Mode = policy.ModeLog
	a, b := rules(rs, DefaultLogGroup, nil, nil), rules(logRS, DefaultLogGroup, nil, nil)
	if blockRule(t, a).comment() == blockRule(t, b).comment() {
		t.Error("reject and log block rules share a comment; Verify could not tell them apart")
	}
	more := rs
	more.UIDs = append([]uint32{}, 0, 1, 2, 3)
	for i, r := range rules(more, DefaultLogGroup, nil, nil) {
		if r.comment() != a[i].comment() {
			t.Errorf("rule %d's fingerprint depends on set contents; uid changes would force full rebuilds", i)
		}
	}
}

// The NFLOG group is the backend's configuration: New's zero value is the
// default, an explicit one is what the block rule logs to.
func TestConfigLogGroup(t *testing.T) {
	rs := testRulesets()["reject_default"]
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, `log prefix "smtpguard blocked" group 2525 `},
		{Config{LogGroup: 7}, `log prefix "smtpguard blocked" group 7 `},
	} {
		if got := New(tt.cfg).Render(rs); !strings.Contains(got, tt.want) {
			t.Errorf("New(%+v).Render() has no %q:\n%s", tt.cfg, tt.want, got)
		}
	}
}

// blockRule is the check chain's last rule, which refuses (or logs) what no
// rule let through.
func blockRule(t *testing.T, specs []ruleSpec) ruleSpec {
	t.Helper()
	for i := len(specs) - 1; i >= 0; i-- {
		if specs[i].chain == chainCheck || specs[i].chain == chainRedirect {
			return specs[i]
		}
	}
	t.Fatal("no check chain rule")
	return ruleSpec{}
}
