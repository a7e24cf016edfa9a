package engine

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// TestDecideUnderExplainMode: explain mode refuses a blocked user as reject
// does (the responder answers 554 in place of the server), so Decide calls
// it refused and says how; 465 is refused as in reject.
func TestDecideUnderExplainMode(t *testing.T) {
	f := newFixture(t, "usr/sbin/exim4")
	ctx := context.Background()
	must(t)(f.eng.Enable(ctx, admin, "fake"))
	must(t)(f.eng.SetMode(ctx, admin, "explain"))
	remote := netip.MustParseAddr("192.0.2.25")
	for _, tt := range []struct {
		port    uint16
		verdict policy.Verdict
		why     string
	}{
		{25, policy.VerdictExplain, "554 5.7.1"},
		{465, policy.VerdictReject, "refused"},
	} {
		d, err := f.eng.Decide(ctx, 1004, remote, tt.port, false)
		if err != nil {
			t.Fatal(err)
		}
		if d.Verdict != tt.verdict || !d.Refused() || !strings.Contains(d.Why, tt.why) {
			t.Errorf("Decide(uid 1004, %v, %d) under explain = verdict %v, refused %v, why %q; want verdict %v, refused, why naming %q",
				remote, tt.port, d.Verdict, d.Refused(), d.Why, tt.verdict, tt.why)
		}
	}
}
