package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// The automatic hold: the daemon counts each uid's refused and rate-limited
// attempts in a sliding window (hold-after N/PERIOD), holds the uid through
// the engine when the count reaches N, ends timed holds when they run out
// (a timer set for the earliest end, not a poll), and announces every hold
// start and end, whoever caused it, exactly once (HoldNotice).

// holdEventLag is how late attempts may be reported: the kernel hands log
// messages over in batches (up to 0.1 s with the nft backend) and events
// carry the time they were read. Attempts reported within it after a hold
// ends are taken as made during the hold, so the refusals the hold itself
// caused do not hold the user again.
const holdEventLag = time.Second

// maxCountedUIDs bounds the counter under a flood from many uids; uids past
// it are not counted until stale ones are pruned. With at most
// engine.MaxHoldAfter attempt times kept per uid, the counter stays under
// 128 MiB whatever happens.
const maxCountedUIDs = 16384

// attemptWindow is one uid's newest attempts, as exact times: a ring of at
// most the threshold's count, so a window counts exactly and costs at most
// 8 bytes per attempt the threshold names.
type attemptWindow struct {
	times []int64 // unix nanoseconds
	next  int     // the slot the next attempt overwrites once the ring is full
	last  int64   // the newest attempt
	// floor: attempts before it are not counted (they belong to a burst a
	// hold or a release already dealt with, reported late by the queue).
	floor int64
}

// attemptCounter counts refused and rate-limited attempts per uid in a
// sliding window. It is fed from the event path and never blocks there.
type attemptCounter struct {
	mu sync.Mutex // protects the following fields
	// rate is the threshold; zero counts nothing.
	rate policy.Rate
	uids map[uint32]*attemptWindow
	// skip are uids that must not trigger a hold: on hold, or with a hold
	// on its way. Their attempts still count, so those made after a
	// release and before the daemon learns of it are not lost.
	skip map[uint32]bool
}

func newAttemptCounter() *attemptCounter {
	return &attemptCounter{uids: map[uint32]*attemptWindow{}, skip: map[uint32]bool{}}
}

// setRate changes the threshold; a different threshold starts counting
// afresh.
func (c *attemptCounter) setRate(r policy.Rate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r == c.rate {
		return
	}
	c.rate, c.uids = r, map[uint32]*attemptWindow{}
}

// add counts one attempt of uid at t and reports the count in the window
// and whether it reached the threshold now; a uid that reached it does not
// trigger again until setSkip says otherwise.
func (c *attemptCounter) add(uid uint32, t time.Time) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rate.IsZero() {
		return 0, false
	}
	tn := t.UnixNano()
	w, ok := c.uids[uid]
	if ok && tn < w.floor {
		return 0, false
	}
	if !ok {
		if len(c.uids) >= maxCountedUIDs {
			c.prune(tn)
			if len(c.uids) >= maxCountedUIDs {
				return 0, false
			}
		}
		w = &attemptWindow{}
		c.uids[uid] = w
	}
	if len(w.times) < int(c.rate.Count) {
		w.times = append(w.times, tn)
	} else {
		w.times[w.next] = tn
		w.next = (w.next + 1) % len(w.times)
	}
	w.last = max(w.last, tn)
	from := tn - int64(c.rate.Period)
	var n int64
	for _, at := range w.times {
		if at > from && at <= tn && at >= w.floor {
			n++
		}
	}
	if n < int64(c.rate.Count) || c.skip[uid] {
		return n, false
	}
	c.skip[uid] = true
	return n, true
}

// prune forgets uids with nothing left in the window at tn.
func (c *attemptCounter) prune(tn int64) {
	for uid, w := range c.uids {
		if w.last <= tn-int64(c.rate.Period) && w.floor <= tn-int64(c.rate.Period) {
			delete(c.uids, uid)
		}
	}
}

// clear forgets uid's attempts before at: a hold started or ended then, so
// the same burst does not hold it again, even when the queue reports some of
// its attempts late. Attempts from at on still count.
func (c *attemptCounter) clear(uid uint32, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.uids[uid]
	if !ok {
		if c.rate.IsZero() {
			return
		}
		w = &attemptWindow{}
		c.uids[uid] = w
	}
	w.floor = max(w.floor, at.UnixNano())
	// Oldest first, so that once the ring is full again it overwrites the
	// oldest attempt.
	ordered := append(slices.Clone(w.times[w.next:]), w.times[:w.next]...)
	kept := ordered[:0]
	for _, t := range ordered {
		if t >= w.floor {
			kept = append(kept, t)
		}
	}
	w.times, w.next = kept, 0
	w.last = max(w.last, w.floor)
}

// setSkip replaces the uids not to count with those on hold now.
func (c *attemptCounter) setSkip(held []uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skip = make(map[uint32]bool, len(held))
	for _, uid := range held {
		c.skip[uid] = true
	}
}

// dealtWith reports whether an attempt of uid at t came before a hold or
// release the daemon has seen since (clear's floor): the burst it belongs
// to no longer holds anyone.
func (c *attemptCounter) dealtWith(uid uint32, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.uids[uid]
	return ok && t.UnixNano() < w.floor
}

// unskip counts uid again (a hold that was meant to start did not).
func (c *attemptCounter) unskip(uid uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.skip, uid)
}

// holdClock is the hold keeper's time: the real one, or a fake in tests.
type holdClock interface {
	Now() time.Time
	// AfterFunc runs f after d, like time.AfterFunc.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// holdTrigger is a uid whose attempts reached the threshold.
type holdTrigger struct {
	uid   uint32
	count int64
	rate  policy.Rate
	at    time.Time // the attempt that reached it
}

// holdKeeper runs the automatic hold and the hold timer, and announces holds.
type holdKeeper struct {
	eng      *engine.Engine
	clock    holdClock
	log      *slog.Logger
	counter  *attemptCounter
	held     prometheus.Gauge
	announce func(HoldNotice)
	// changed asks for a reconcile after a hold change, so the daemon's
	// last enforced ruleset (its lock-free repairs) includes it.
	changed func()

	triggers chan holdTrigger
	poke     chan struct{} // holds or settings changed, or the timer fired

	mu        sync.Mutex // protects the following fields
	stopTimer func() bool
	timerAt   time.Time
	// retryAt is when to try again to end holds whose time ran out, after
	// ExpireHolds failed; zero when it did not.
	retryAt time.Time
}

func newHoldKeeper(eng *engine.Engine, m *metrics, log *slog.Logger, clock holdClock) *holdKeeper {
	if clock == nil {
		clock = realClock{}
	}
	held := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "smtpguard_held_users",
		Help: "Users on hold now: their allowances and exceptions are suspended.",
	})
	m.registry.MustRegister(held)
	return &holdKeeper{
		eng: eng, clock: clock, log: log, counter: newAttemptCounter(), held: held,
		changed:  func() {},
		triggers: make(chan holdTrigger, 64),
		poke:     make(chan struct{}, 1),
	}
}

// observe counts a refused or rate-limited attempt from the event path; it
// never blocks. Explain mode's refusals (the responder's 554) count as
// refused: that mode differs from reject only in what the client is told.
func (k *holdKeeper) observe(ev enforce.Event) {
	switch ev.Action {
	case enforce.ActionBlocked, enforce.ActionRateLimited, enforce.ActionExplained:
	default:
		return
	}
	if !ev.HasUID {
		return
	}
	at := ev.Time
	if at.IsZero() {
		at = k.clock.Now()
	}
	count, crossed := k.counter.add(ev.UID, at)
	if !crossed {
		return
	}
	k.counter.mu.Lock()
	rate := k.counter.rate
	k.counter.mu.Unlock()
	select {
	case k.triggers <- holdTrigger{uid: ev.UID, count: count, rate: rate, at: at}:
	default:
		k.counter.unskip(ev.UID) // counted again; the next attempt retries
	}
}

// Poke tells the keeper that holds or their settings may have changed
// (another process's change, seen through the store).
func (k *holdKeeper) Poke() {
	select {
	case k.poke <- struct{}{}:
	default:
	}
}

// run holds, expires and announces until ctx ends.
func (k *holdKeeper) run(ctx context.Context) {
	defer k.setTimer(time.Time{})
	if k.expire(ctx) { // holds that ran out while no daemon ran
		k.changed()
	}
	k.sync(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-k.triggers:
			k.autoHold(ctx, t)
		case <-k.poke:
		}
		if k.expire(ctx) {
			k.changed()
		}
		k.sync(ctx)
	}
}

// autoHold holds a uid whose attempts reached the threshold.
func (k *holdKeeper) autoHold(ctx context.Context, t holdTrigger) {
	// A trigger that waited while a hold of the uid started or ended (a
	// second one of the same burst) is that burst's: already dealt with.
	if k.counter.dealtWith(t.uid, t.at) {
		return
	}
	threshold := "hold-after " + t.rate.String()
	res, err := k.eng.Hold(ctx, engine.Actor{Name: "daemon", Source: "daemon"}, engine.HoldRequest{
		User:      strconv.FormatUint(uint64(t.uid), 10),
		Reason:    fmt.Sprintf("%d refused or rate-limited attempts within %s", t.count, t.rate.Period),
		Threshold: threshold,
		Count:     t.count,
	})
	if err != nil {
		k.counter.unskip(t.uid)
		k.log.Warn("cannot hold a user over the hold-after threshold", "uid", t.uid, "threshold", threshold, "count", t.count, "err", err)
		return
	}
	if res.Changed {
		k.log.Info("user held automatically", "uid", t.uid, "threshold", threshold, "count", t.count, "detail", res.Message)
		k.changed()
	}
}

// expire ends the holds whose time ran out; it reports whether any did.
func (k *holdKeeper) expire(ctx context.Context) bool {
	res, err := k.eng.ExpireHolds(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.log.Warn("cannot end expired holds; retrying", "err", err)
		k.retryAt = k.clock.Now().Add(time.Second)
		return false
	}
	k.retryAt = time.Time{}
	return res.Changed
}

// sync reads the settings and the holds, announces what has not been, and
// sets the timer for the earliest hold end.
func (k *holdKeeper) sync(ctx context.Context) {
	if hs, err := k.eng.HoldSettings(ctx); err == nil {
		k.counter.setRate(hs.After)
	} else {
		k.log.Warn("cannot read the hold settings", "err", err)
	}
	rows, err := k.eng.TakeHoldNotices(ctx)
	if err != nil {
		k.log.Warn("cannot read hold changes", "err", err)
	}
	var events []store.Event
	for _, r := range rows {
		at := r.Since
		if r.Ended {
			at = r.ReleasedAt.Add(holdEventLag)
		}
		k.counter.clear(r.UID, at)
		k.announceRow(r)
		if !r.Ended {
			events = append(events, store.Event{UID: r.UID, User: r.User, Action: enforce.ActionHeld,
				Count: max(r.Count, 1), FirstSeen: r.Since, LastSeen: r.Since})
		}
	}
	if len(events) > 0 {
		if err := k.eng.RecordEvents(ctx, events); err != nil {
			k.log.Warn("cannot record hold events", "err", err)
		}
	}
	holds, err := k.eng.Holds(ctx)
	if err != nil {
		k.log.Warn("cannot read holds", "err", err)
		return
	}
	uids := make([]uint32, 0, len(holds))
	var next time.Time
	for _, h := range holds {
		uids = append(uids, h.UID)
		if h.Until != nil && (next.IsZero() || h.Until.Before(next)) {
			next = *h.Until
		}
	}
	k.counter.setSkip(uids)
	k.held.Set(float64(len(holds)))
	k.mu.Lock()
	if !k.retryAt.IsZero() && (next.IsZero() || k.retryAt.Before(next)) {
		next = k.retryAt
	}
	k.mu.Unlock()
	k.setTimer(next)
}

// setTimer pokes the keeper at at (zero: never).
func (k *holdKeeper) setTimer(at time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if at.Equal(k.timerAt) && k.stopTimer != nil {
		return
	}
	if k.stopTimer != nil {
		k.stopTimer()
		k.stopTimer = nil
	}
	k.timerAt = at
	if at.IsZero() {
		return
	}
	k.stopTimer = k.clock.AfterFunc(max(at.Sub(k.clock.Now()), 0), func() {
		k.mu.Lock()
		if k.timerAt.Equal(at) {
			k.stopTimer, k.timerAt = nil, time.Time{} // fired: the next sync sets a new one
		}
		k.mu.Unlock()
		k.Poke()
	})
}

func (k *holdKeeper) announceRow(r store.HoldNoticeRow) {
	n := HoldNotice{Event: enforce.ActionHeld, UID: r.UID, User: r.User, Since: r.Since, Until: r.Until,
		Reason: r.Reason, By: r.By, Count: r.Count}
	if r.Ended {
		n.Event, n.By, n.Count = HoldReleased, r.ReleasedBy, 0
	}
	k.announce(n)
}

// announceHold is the one place every hold start and end goes through, once
// each (threshold, CLI, API, web, expiry): it logs, and hands it to the
// webhook and the notify command.
func (d *Daemon) announceHold(n HoldNotice) {
	attrs := []any{"uid", n.UID, "user", n.User, "by", n.By, "reason", n.Reason, "since", n.Since}
	if !n.Until.IsZero() {
		attrs = append(attrs, "until", n.Until)
	}
	if n.Count > 0 {
		attrs = append(attrs, "count", n.Count)
	}
	// The webhook and the notify command hear of it too (never blocking).
	defer d.NotifyHold(n)
	if n.Event == HoldReleased {
		d.log.Info("hold ended", attrs...)
		return
	}
	d.log.Info("user held: allowances and exceptions suspended", attrs...)
}
