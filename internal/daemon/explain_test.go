package daemon

import (
	"context"
	"testing"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// The engine compiles explain-mode rulesets with the default responder
// port; the daemon's Kernel sends them to the port its responder listens
// on (serve --explain-port), and leaves other modes alone.
func TestKernelUsesTheDaemonsExplainPort(t *testing.T) {
	ctx := context.Background()
	fb := fake.New("fake")
	k := NewKernel([]enforce.Backend{fb})
	k.SetExplainPort(12025)
	b := k.Backends()[0]
	for _, tt := range []struct {
		mode policy.Mode
		want uint16
	}{{policy.ModeExplain, 12025}, {policy.ModeReject, 0}} {
		rs := policy.Compile(policy.Policy{Mode: tt.mode, Ports: []uint16{25}}, policy.Resolution{UIDs: []uint32{0}})
		if err := b.Apply(ctx, rs); err != nil {
			t.Fatal(err)
		}
		if got := fb.Installed(); got == nil || got.ExplainPort != tt.want {
			t.Errorf("mode %s: the backend got %+v, want explain port %d", tt.mode, got, tt.want)
		}
		// Verify compares with the same port, so it is in sync.
		if d, err := b.Verify(ctx, rs); err != nil || !d.InSync() {
			t.Errorf("mode %s: Verify = %s, %v; want in sync", tt.mode, d, err)
		}
	}
}
