package daemon

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/engine"
)

// TestDaemonHoldsOnABurstUnderExplainMode: under explain mode the kernel
// reports a refused connection as "explained" (the responder told the
// client why), and a burst of those holds the user as a burst of plain
// refusals does in reject mode.
func TestDaemonHoldsOnABurstUnderExplainMode(t *testing.T) {
	f, eng, clock := clockedFixture(t)
	ctx := context.Background()
	for _, step := range []func() (engine.Result, error){
		func() (engine.Result, error) { return eng.Enable(ctx, admin, "fake") },
		func() (engine.Result, error) { return eng.SetMode(ctx, admin, "explain") },
		func() (engine.Result, error) { return eng.SetHoldAfter(ctx, admin, "3/m") },
	} {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	notes := &noticeLog{}
	d, _ := holdDaemon(t, f, eng, clock, notes)
	waitFor(t, "the hold settings read", func() bool {
		d.holds.counter.mu.Lock()
		defer d.holds.counter.mu.Unlock()
		return !d.holds.counter.rate.IsZero()
	})
	for range 3 {
		f.backend.Emit(enforce.Event{Time: clock.Now(), UID: 1002, HasUID: true, Family: 4,
			Dst: netip.MustParseAddr("192.0.2.99"), DstPort: 25, Action: enforce.ActionExplained})
	}
	waitFor(t, "bob held after 3 explained refusals", func() bool {
		return slices.Equal(notes.all(), []string{"held bob hold-after 3/m timed"})
	})
}
