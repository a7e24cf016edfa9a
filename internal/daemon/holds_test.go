package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

func TestAttemptCounterSlidingWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c := newAttemptCounter()
	if _, crossed := c.add(1001, t0); crossed {
		t.Fatal("counted with no threshold set")
	}
	c.setRate(policy.Rate{Count: 5, Period: time.Minute})
	for i := range 4 {
		if n, crossed := c.add(1001, t0.Add(time.Duration(i)*time.Second)); crossed || n != int64(i+1) {
			t.Fatalf("attempt %d = %d, %v; want %d, not crossed", i+1, n, crossed, i+1)
		}
	}
	// Out of the window, the first four no longer count.
	if n, crossed := c.add(1001, t0.Add(64*time.Second)); crossed || n != 1 {
		t.Errorf("attempt a minute later = %d, %v; want 1: the window slides", n, crossed)
	}
	for i := range 3 {
		c.add(1001, t0.Add(65*time.Second+time.Duration(i)*time.Second))
	}
	if n, crossed := c.add(1001, t0.Add(70*time.Second)); !crossed || n != 5 {
		t.Errorf("fifth attempt within a minute = %d, %v; want 5, crossed", n, crossed)
	}
	if _, crossed := c.add(1001, t0.Add(71*time.Second)); crossed {
		t.Error("crossed again before the hold started: one trigger per burst")
	}
	// Other uids count on their own.
	if n, _ := c.add(1002, t0.Add(71*time.Second)); n != 1 {
		t.Errorf("another uid's first attempt = %d, want 1", n)
	}
	// Released at 2m (the daemon clears up to the release plus the lag of
	// reports); two attempts follow before the daemon learns of it (the
	// uid is still skipped): they count once it does, while the burst's
	// late reports do not.
	release := t0.Add(2 * time.Minute)
	c.add(1001, release.Add(100*time.Millisecond))
	c.add(1001, release.Add(200*time.Millisecond))
	c.setSkip(nil)
	c.clear(1001, release.Add(-time.Second))
	c.clear(1001, release) // a later clear never lowers the floor
	for i := range 10 {
		if n, crossed := c.add(1001, release.Add(-time.Duration(i+1)*time.Second)); crossed || n != 0 {
			t.Fatalf("late report of the old burst = %d, %v; want not counted", n, crossed)
		}
	}
	if n, _ := c.add(1001, release.Add(time.Second)); n != 3 {
		t.Errorf("third attempt after the release = %d, want 3: the two made before the daemon knew count", n)
	}
	// Exact at the window's edge, with the ring full and wrapping: 3/m
	// every 31 s never has 3 in a minute; every 29 s it does at the third.
	c.setRate(policy.Rate{Count: 3, Period: time.Minute})
	for i := range 10 {
		if n, crossed := c.add(7, t0.Add(time.Duration(i)*31*time.Second)); crossed || n > 2 {
			t.Fatalf("attempt %d every 31s under 3/m = %d, %v; want at most 2, not crossed", i+1, n, crossed)
		}
	}
	for i := range 3 {
		n, crossed := c.add(8, t0.Add(time.Duration(i)*29*time.Second))
		if want := i == 2; crossed != want || n != int64(i+1) {
			t.Fatalf("attempt %d every 29s under 3/m = %d, %v; want %d, crossed %v", i+1, n, crossed, i+1, want)
		}
	}
	// A different threshold starts afresh.
	c.setRate(policy.Rate{Count: 2, Period: time.Hour})
	if n, _ := c.add(1001, release.Add(2*time.Second)); n != 1 {
		t.Errorf("first attempt under a new threshold = %d, want 1", n)
	}
}

// fakeClock drives the engine's Now and the hold keeper's timers.
type fakeClock struct {
	mu     sync.Mutex // protects the following fields
	now    time.Time
	timers map[int]fakeTimer
	next   int
}

type fakeTimer struct {
	at time.Time
	f  func()
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t, timers: map[int]fakeTimer{}} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.next
	c.next++
	c.timers[id] = fakeTimer{at: c.now.Add(d), f: f}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.timers[id]
		delete(c.timers, id)
		return ok
	}
}

// Advance moves the time on and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for id, tm := range c.timers {
		if !tm.at.After(c.now) {
			due = append(due, tm.f)
			delete(c.timers, id)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// Pending is how many timers are set.
func (c *fakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// noticeLog collects the daemon's hold announcements from its log.
type noticeLog struct {
	mu    sync.Mutex // protects notes
	notes []string
}

func (l *noticeLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *noticeLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *noticeLog) WithGroup(string) slog.Handler            { return l }
func (l *noticeLog) Handle(_ context.Context, r slog.Record) error {
	var what string
	switch r.Message {
	case "user held: allowances and exceptions suspended":
		what = "held"
	case "hold ended":
		what = "ended"
	default:
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "user", "by":
			what += " " + a.Value.String()
		case "until":
			what += " timed"
		}
		return true
	})
	l.mu.Lock()
	l.notes = append(l.notes, what)
	l.mu.Unlock()
	return nil
}

func (l *noticeLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.notes)
}

// clockedFixture is newFixture with its engine reopened on a fake clock
// (10:00 UTC on 1 December 2026), which the hold keeper shares.
func clockedFixture(t *testing.T) (*fixture, *engine.Engine, *fakeClock) {
	t.Helper()
	f := newFixture(t)
	f.eng.Close()
	clock := newFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	cfg := f.cfg
	cfg.Now = clock.Now
	eng, err := engine.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return f, eng, clock
}

// holdDaemon runs a daemon on clock until stop is called or the test ends.
func holdDaemon(t *testing.T, f *fixture, eng *engine.Engine, clock *fakeClock, notes *noticeLog) (d *Daemon, stop func()) {
	t.Helper()
	return f.run(t, Config{Engine: eng, FlushInterval: 10 * time.Millisecond, Logger: slog.New(notes), holdClock: clock})
}

func hasExceptionFor(rs *policy.Ruleset, uid uint32) bool {
	return rs != nil && slices.ContainsFunc(rs.Exceptions, func(x policy.ExceptionRule) bool { return x.UID == uid })
}

// TestDaemonHoldsOnABurstExpiresAndEscalates: bob may reach one relay; a
// burst of refused attempts elsewhere holds him (his exception is gone from
// the kernel at once), the hold ends by its timer, the burst's late reports
// do not hold him again, the third hold in a day lasts until released, holds
// outlive a restart, and a release by another process (the CLI) restores him.
func TestDaemonHoldsOnABurstExpiresAndEscalates(t *testing.T) {
	f, eng, clock := clockedFixture(t)
	ctx := context.Background()
	if _, err := eng.Enable(ctx, admin, "fake"); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.AllowException(ctx, admin, policy.KindUser, "bob", "192.0.2.25", "25"); err != nil {
		t.Fatal(err)
	}
	for _, set := range []func() (engine.Result, error){
		func() (engine.Result, error) { return eng.SetHoldAfter(ctx, admin, "3/m") },
		func() (engine.Result, error) { return eng.SetHoldFor(ctx, admin, "10m") },
	} {
		if _, err := set(); err != nil {
			t.Fatal(err)
		}
	}
	notes := &noticeLog{}
	d, stop := holdDaemon(t, f, eng, clock, notes)
	waitFor(t, "the hold settings read", func() bool {
		d.holds.counter.mu.Lock()
		defer d.holds.counter.mu.Unlock()
		return !d.holds.counter.rate.IsZero()
	})
	burst := func(n int, at time.Time) {
		for range n {
			f.backend.Emit(enforce.Event{Time: at, UID: 1002, HasUID: true, Family: 4,
				Dst: netip.MustParseAddr("192.0.2.99"), DstPort: 25, Action: enforce.ActionBlocked})
		}
	}
	waitNotes := func(want ...string) {
		t.Helper()
		waitFor(t, "hold notices "+strings.Join(want, ", "), func() bool { return slices.Equal(notes.all(), want) })
	}

	// A logged-only attempt never counts; refused ones do.
	for range 5 {
		f.backend.Emit(enforce.Event{Time: clock.Now(), UID: 1002, HasUID: true, Family: 4,
			Dst: netip.MustParseAddr("192.0.2.99"), DstPort: 25, Action: enforce.ActionLogged})
	}
	burst(3, clock.Now())
	waitNotes("held bob hold-after 3/m timed")
	if hasExceptionFor(f.backend.Installed(), 1002) {
		t.Errorf("bob's exception is still in the kernel while he is held: %+v", f.backend.Installed())
	}
	waitFor(t, "smtpguard_held_users 1", func() bool { return promtest.ToFloat64(d.holds.held) == 1 })
	waitFor(t, "a held event", func() bool {
		evs, _ := eng.Events(ctx, store.EventFilter{})
		return slices.ContainsFunc(evs, func(e engine.EventView) bool { return e.Action == enforce.ActionHeld && e.UID == 1002 && e.Count == 3 })
	})

	// The timer ends the hold; no poll of the clock is involved.
	waitFor(t, "the expiry timer", func() bool { return clock.Pending() == 1 })
	clock.Advance(10 * time.Minute)
	waitNotes("held bob hold-after 3/m timed", "ended bob expiry timed")
	waitFor(t, "bob's exception back", func() bool { return hasExceptionFor(f.backend.Installed(), 1002) })

	// The refusals of the hold reported late, read before or just after
	// its end (within holdEventLag), do not hold him again.
	burst(2, clock.Now().Add(-time.Second))
	burst(1, clock.Now().Add(holdEventLag/2))
	waitFor(t, "the late reports recorded", func() bool {
		evs, _ := eng.Events(ctx, store.EventFilter{})
		var n int64
		for _, e := range evs {
			if e.Action == enforce.ActionBlocked {
				n += e.Count
			}
		}
		return n == 6
	})
	d.holds.counter.mu.Lock()
	counted := d.holds.counter.skip[1002] // set the moment a uid crosses the threshold
	d.holds.counter.mu.Unlock()
	if holds, _ := eng.Holds(ctx); len(holds) != 0 || counted {
		t.Fatalf("the burst's late reports held bob again: %+v (crossed %v)", holds, counted)
	}

	// Second and third holds within a day: the third lasts until released.
	burst(3, clock.Now().Add(2*holdEventLag))
	waitNotes("held bob hold-after 3/m timed", "ended bob expiry timed", "held bob hold-after 3/m timed")
	clock.Advance(10 * time.Minute)
	waitNotes("held bob hold-after 3/m timed", "ended bob expiry timed", "held bob hold-after 3/m timed", "ended bob expiry timed")
	burst(3, clock.Now().Add(2*holdEventLag))
	waitNotes("held bob hold-after 3/m timed", "ended bob expiry timed", "held bob hold-after 3/m timed", "ended bob expiry timed",
		"held bob hold-after 3/m")
	waitFor(t, "no timer for a hold until released", func() bool { return clock.Pending() == 0 })
	clock.Advance(48 * time.Hour)

	// A restart, and a kernel that lost its rules (a reboot): the hold is
	// still enforced.
	stop()
	f.backend.Tamper(nil)
	notes2 := &noticeLog{}
	holdDaemon(t, f, eng, clock, notes2)
	waitFor(t, "rules back after the restart", func() bool { return f.backend.Installed() != nil })
	if hasExceptionFor(f.backend.Installed(), 1002) {
		t.Error("after a restart bob's exception is back while he is held until released")
	}

	// Released by another process (the CLI): the daemon notices and says so.
	if _, err := eng.Release(ctx, admin, "bob"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the release announced", func() bool { return slices.Equal(notes2.all(), []string{"ended bob cli:root"}) })
	if !hasExceptionFor(f.backend.Installed(), 1002) {
		t.Error("bob's exception not restored by the release")
	}
}

// TestDaemonEndsHoldsThatRanOutWhileItWasDown: a hold made and run out
// while no daemon ran is announced, started and ended, when one starts.
func TestDaemonEndsHoldsThatRanOutWhileItWasDown(t *testing.T) {
	f, eng, clock := clockedFixture(t)
	ctx := context.Background()
	eng.Enable(ctx, admin, "fake")
	eng.Allow(ctx, admin, policy.KindUser, "alice")
	d := time.Minute
	if _, err := eng.Hold(ctx, admin, engine.HoldRequest{User: "alice", For: &d}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	notes := &noticeLog{}
	holdDaemon(t, f, eng, clock, notes)
	waitFor(t, "the hold's start and end announced", func() bool {
		return slices.Equal(notes.all(), []string{"held alice cli:root timed", "ended alice expiry timed"})
	})
	recs, _ := eng.Store().Audit(ctx, store.AuditFilter{Operation: "release"})
	if len(recs) != 1 || recs[0].Actor != "expiry" {
		t.Errorf("audit of the expiry = %+v, want one record by expiry", recs)
	}
}
