package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/engine"
)

// TestTriggerOfAReleasedBurstDoesNotHoldAgain: a burst can leave a second
// trigger waiting (the keeper re-read the holds while the first was on its
// way, and the burst went on). When the hold it asks for has started and
// an administrator has released the user before the keeper gets to it, it
// must not hold the user again: a release forgets the burst.
func TestTriggerOfAReleasedBurstDoesNotHoldAgain(t *testing.T) {
	_, eng, clock := clockedFixture(t)
	ctx := context.Background()
	for _, step := range []func() (engine.Result, error){
		func() (engine.Result, error) { return eng.Enable(ctx, admin, "fake") },
		func() (engine.Result, error) { return eng.SetHoldAfter(ctx, admin, "3/m") },
	} {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	k := newHoldKeeper(eng, newMetrics(), slog.New(slog.DiscardHandler), clock)
	k.announce = func(HoldNotice) {}
	k.sync(ctx) // the threshold
	attempt := func() {
		k.observe(enforce.Event{Time: clock.Now(), UID: 1002, HasUID: true, Family: 4,
			Dst: netip.MustParseAddr("192.0.2.99"), DstPort: 25, Action: enforce.ActionBlocked})
	}
	trigger := func() holdTrigger {
		t.Helper()
		select {
		case tr := <-k.triggers:
			return tr
		default:
			t.Fatal("no trigger")
		}
		panic("unreachable")
	}
	for range 3 {
		attempt()
	}
	first := trigger()
	k.sync(ctx) // a poke meanwhile: nobody is held yet
	attempt()
	second := trigger()

	k.autoHold(ctx, first)
	k.sync(ctx)
	if holds, _ := eng.Holds(ctx); len(holds) != 1 {
		t.Fatalf("Holds() after the first trigger = %+v, want bob held", holds)
	}
	if _, err := eng.Release(ctx, admin, "bob"); err != nil {
		t.Fatal(err)
	}
	k.sync(ctx) // the daemon notices the release
	k.autoHold(ctx, second)
	if holds, _ := eng.Holds(ctx); len(holds) != 0 {
		t.Errorf("Holds() = %+v: the released burst's second trigger held bob again", holds)
	}
}
