package daemon

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// aggKey is what one stored aggregate counts: one uid to one destination
// (or folded prefix, see fold.go) and port within one minute, per action.
type aggKey struct {
	uid    uint32
	dst    string
	port   uint16
	minute int64
	action string
}

// recorder turns kernel events into stored aggregates with bounded memory:
// a fixed-size queue between the kernel reader and the aggregator, and a cap
// on distinct aggregates between flushes. Whatever does not fit is counted as
// dropped, never silently lost.
type recorder struct {
	queue    chan enforce.Event
	store    eventStore
	metrics  *metrics
	log      *slog.Logger
	maxAggs  int
	maxLines int       // log lines per flush; the rest are summarised
	notify   *notifier // nil without --notify-command
	fold     folder    // used by the run goroutine only

	mu  sync.Mutex // protects dir
	dir *policy.Directory
}

// sink is handed to the backend's event reader. It never blocks.
func (r *recorder) sink(ev enforce.Event) {
	if ev.Action == enforce.ActionLost {
		r.metrics.dropped.WithLabelValues("kernel").Inc()
		return
	}
	select {
	case r.queue <- ev:
	default:
		r.metrics.dropped.WithLabelValues("queue_full").Inc()
	}
}

func (r *recorder) setDirectory(d *policy.Directory) {
	r.mu.Lock()
	r.dir = d
	r.mu.Unlock()
}

func (r *recorder) userName(uid uint32) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dir == nil {
		return ""
	}
	if a, ok := r.dir.UserByID(uid); ok {
		return a.Name
	}
	return ""
}

// run aggregates until ctx ends, flushing every interval, and flushes what is
// left on the way out.
func (r *recorder) run(ctx context.Context, interval time.Duration) {
	aggs := map[aggKey]*store.Event{}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case ev := <-r.queue:
			r.add(aggs, ev)
		case <-tick.C:
			r.flush(ctx, aggs)
			aggs = map[aggKey]*store.Event{}
		case <-ctx.Done():
			for drained := false; !drained; {
				select {
				case ev := <-r.queue:
					r.add(aggs, ev)
				default:
					drained = true
				}
			}
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			r.flush(final, aggs)
			cancel()
			return
		}
	}
}

func (r *recorder) add(aggs map[aggKey]*store.Event, ev enforce.Event) {
	uid := ev.UID
	if !ev.HasUID {
		uid = ^uint32(0) // no socket owner reported; shown as uid 4294967295
	}
	minute := ev.Time.Unix() / 60
	dst, folded, ok := r.fold.destination(uid, minute, ev.Dst.Unmap(), ev.DstPort, ev.Action)
	if !ok {
		r.metrics.dropped.WithLabelValues("aggregate_limit").Inc()
		return
	}
	k := aggKey{uid: uid, dst: dst, port: ev.DstPort, minute: minute, action: ev.Action}
	a, ok := aggs[k]
	if !ok {
		if len(aggs) >= r.maxAggs {
			r.metrics.dropped.WithLabelValues("aggregate_limit").Inc()
			return
		}
		a = &store.Event{UID: uid, User: r.userName(uid), Family: ev.Family, Address: dst, Port: ev.DstPort,
			Action: ev.Action, FirstSeen: ev.Time, LastSeen: ev.Time}
		aggs[k] = a
	}
	if folded != "" {
		r.metrics.folded.WithLabelValues(folded).Inc()
	}
	a.Count++
	if ev.Time.Before(a.FirstSeen) {
		a.FirstSeen = ev.Time
	}
	if ev.Time.After(a.LastSeen) {
		a.LastSeen = ev.Time
	}
	user := a.User
	if user == "" {
		user = "uid " + strconv.FormatUint(uint64(uid), 10)
	}
	r.metrics.attempts.With(prometheus.Labels{"user": r.metrics.userLabel(user), "action": ev.Action}).Inc()
}

func (r *recorder) flush(ctx context.Context, aggs map[aggKey]*store.Event) {
	if len(aggs) == 0 {
		return
	}
	batch := make([]store.Event, 0, len(aggs))
	for _, a := range aggs {
		batch = append(batch, *a)
	}
	if err := r.store.RecordEvents(ctx, batch); err != nil {
		var lost int64
		for _, e := range batch {
			lost += e.Count
		}
		r.metrics.dropped.WithLabelValues("store").Add(float64(lost))
		r.log.Error("cannot record blocked attempts", "err", err, "attempts", lost)
		return
	}
	r.fold.prune()
	for _, e := range batch {
		r.notify.offer(e)
	}
	for i, e := range batch {
		if i == r.maxLines {
			r.log.Info("more blocked-attempt aggregates recorded; see 'smtpguard events'", "aggregates", len(batch)-i)
			break
		}
		r.log.Info("SMTP connection attempt "+e.Action, "uid", e.UID, "user", e.User, "destination", e.Address,
			"port", e.Port, "count", e.Count, "first_seen", e.FirstSeen, "last_seen", e.LastSeen)
	}
}
