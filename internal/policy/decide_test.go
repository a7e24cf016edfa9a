package policy

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecideNamesTheRule(t *testing.T) {
	relay := ExceptionRule{UID: 1001, Dst: netip.MustParsePrefix("192.0.2.0/24"), Port: 587}
	rs := Ruleset{
		Mode:       ModeReject,
		Ports:      []uint16{25, 465, 587},
		AllowLocal: true,
		UIDs:       []uint32{0, 101},
		Exceptions: []ExceptionRule{relay},
	}
	remote := netip.MustParseAddr("192.0.2.25")
	tests := []struct {
		name string
		rs   Ruleset
		pkt  Packet
		want Decision
	}{
		{"non-SMTP port leaves first", rs, Packet{UID: 1002, Dst: remote, DstPort: 443}, Decision{Verdict: VerdictAccept, Rule: RuleOtherPort}},
		{"local destination", rs, Packet{UID: 1002, Dst: netip.MustParseAddr("127.0.0.1"), DstPort: 25, DstLocal: true}, Decision{Verdict: VerdictAccept, Rule: RuleLocal}},
		{"local with a routing header is not local", rs, Packet{UID: 1002, Dst: netip.MustParseAddr("::1"), DstPort: 25, DstLocal: true, RoutingHeader: true}, Decision{Verdict: VerdictReject, Rule: RuleBlock}},
		{"root", rs, Packet{UID: 0, Dst: remote, DstPort: 25}, Decision{Verdict: VerdictAccept, Rule: RuleAllowedUID}},
		{"system user", rs, Packet{UID: 101, Dst: remote, DstPort: 465}, Decision{Verdict: VerdictAccept, Rule: RuleAllowedUID}},
		{"exception, mapped address", rs, Packet{UID: 1001, Dst: netip.MustParseAddr("::ffff:192.0.2.25"), DstPort: 587}, Decision{Verdict: VerdictAccept, Rule: RuleException, Exception: relay}},
		{"exception on another port does not apply", rs, Packet{UID: 1001, Dst: remote, DstPort: 25}, Decision{Verdict: VerdictReject, Rule: RuleBlock}},
		{"ordinary user", rs, Packet{UID: 1002, Dst: remote, DstPort: 25}, Decision{Verdict: VerdictReject, Rule: RuleBlock}},
		{"log mode", Ruleset{Mode: ModeLog, Ports: rs.Ports}, Packet{UID: 1002, Dst: remote, DstPort: 25}, Decision{Verdict: VerdictLog, Rule: RuleBlock}},
		{"redirect mode", Ruleset{Mode: ModeRedirect, Ports: rs.Ports}, Packet{UID: 1002, Dst: remote, DstPort: 25}, Decision{Verdict: VerdictRedirect, Rule: RuleBlock}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.rs.Decide(tt.pkt)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("Decide(%+v) (-want +got):\n%s", tt.pkt, diff)
			}
			if v := tt.rs.Trace(tt.pkt); v != got.Verdict {
				t.Errorf("Trace(%+v) = %s, Decide says %s", tt.pkt, v, got.Verdict)
			}
		})
	}
}
