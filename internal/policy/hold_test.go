package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRulesetWithoutUIDs(t *testing.T) {
	dst := netip.MustParsePrefix("192.0.2.10/32")
	rate := Rate{Count: 5, Period: time.Minute}
	rs := Ruleset{
		Mode: ModeReject, Ports: []uint16{25, 587}, AllowLocal: true,
		UIDs:       []uint32{0, 101, 1001, 1002},
		Exceptions: []ExceptionRule{{UID: 1001, Dst: dst, Port: 25}, {UID: 1003, Dst: dst, Port: 587}},
		RateLimits: []UIDRate{{UID: 1001, Rate: rate}, {UID: 1002, Rate: rate}},
	}
	keep := rs.Clone()
	for _, tt := range []struct {
		name string
		uids []uint32
		want Ruleset
	}{
		{"none held", nil, rs},
		{"allowed user with exception and limit", []uint32{1001}, Ruleset{
			Mode: ModeReject, Ports: []uint16{25, 587}, AllowLocal: true,
			UIDs:       []uint32{0, 101, 1002},
			Exceptions: []ExceptionRule{{UID: 1003, Dst: dst, Port: 587}},
			RateLimits: []UIDRate{{UID: 1002, Rate: rate}},
		}},
		{"exception only and a uid nobody allows", []uint32{1003, 4242}, Ruleset{
			Mode: ModeReject, Ports: []uint16{25, 587}, AllowLocal: true,
			UIDs:       []uint32{0, 101, 1001, 1002},
			Exceptions: []ExceptionRule{{UID: 1001, Dst: dst, Port: 25}},
			RateLimits: []UIDRate{{UID: 1001, Rate: rate}, {UID: 1002, Rate: rate}},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := rs.WithoutUIDs(tt.uids)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("WithoutUIDs(%v) (-want +got):\n%s", tt.uids, diff)
			}
			if !rs.Equal(keep) {
				t.Errorf("WithoutUIDs(%v) changed its receiver: %+v", tt.uids, rs)
			}
			// The tracer agrees: a held uid is refused where it passed.
			for _, uid := range tt.uids {
				pkt := Packet{UID: uid, Dst: dst.Addr(), DstPort: 25}
				if v := got.Trace(pkt); v != VerdictReject {
					t.Errorf("WithoutUIDs(%v).Trace(uid %d to %s:25) = %s, want %s", tt.uids, uid, dst.Addr(), v, VerdictReject)
				}
			}
		})
	}
}
