package daemon

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/explain"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/procinfo"
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
	explains chan explain.Attempt // from the explain responder (explain.go)
	store    eventStore
	metrics  *metrics
	log      *slog.Logger
	maxAggs  int
	maxLines int         // log lines per flush; the rest are summarised
	notify   *notifier   // nil without --notify-command
	holds    *holdKeeper // counts attempts for the automatic hold; nil counts none
	fold     folder      // used by the run goroutine only
	proc     procinfo.Reader

	mu  sync.Mutex // protects dir
	dir *policy.Directory
}

// sink is handed to the backend's event reader. It never blocks.
func (r *recorder) sink(ev enforce.Event) {
	if ev.Action == enforce.ActionLost {
		reason := ev.LostReason
		if reason == "" {
			reason = "kernel"
		}
		r.metrics.dropped.WithLabelValues(reason).Inc()
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
		case x := <-r.explains:
			r.addExplained(aggs, x)
		case <-tick.C:
			r.flush(ctx, aggs)
			aggs = map[aggKey]*store.Event{}
		case <-ctx.Done():
			for drained := false; !drained; {
				select {
				case ev := <-r.queue:
					r.add(aggs, ev)
				case x := <-r.explains:
					r.addExplained(aggs, x)
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
	if r.holds != nil {
		r.holds.observe(ev)
	}
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
	if !ev.Time.Before(a.LastSeen) {
		a.LastSeen = ev.Time
		r.setProcess(a, ev)
	}
	user := a.User
	if user == "" {
		user = "uid " + strconv.FormatUint(uint64(uid), 10)
	}
	r.metrics.attempts.With(prometheus.Labels{"user": r.metrics.userLabel(user), "action": ev.Action}).Inc()
}

// setProcess records the process behind ev as a's last: what the backend
// told, and what /proc/TGID still shows. A process looping on connect()
// is read from /proc once per aggregate, not once per attempt.
func (r *recorder) setProcess(a *store.Event, ev enforce.Event) {
	pid := ev.TGID
	if pid == 0 {
		pid = ev.PID
	}
	if pid == 0 && ev.Comm == "" {
		return // the backend knows no process (nft)
	}
	if a.PID == pid && pid != 0 {
		return
	}
	p := store.Process{PID: pid, Comm: ev.Comm}
	if pid != 0 {
		if info, ok := r.proc.Read(pid); ok {
			p = store.Process{PID: pid, Comm: info.Comm, Exe: info.Exe, Cmdline: info.Cmdline, Cwd: info.Cwd,
				Cgroup: info.Cgroup, Unit: info.Unit, Container: info.Container, Pool: info.Pool}
			if ev.Comm != "" {
				p.Comm = ev.Comm // the kernel's, at the attempt
			}
		}
	}
	a.Process = p
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
		if e.Count > 0 { // not an explain record alone: its attempt is counted (and offered) with the kernel's event
			r.notify.offer(e)
		}
	}
	for i, e := range batch {
		if i == r.maxLines {
			r.log.Info("more blocked-attempt aggregates recorded; see 'smtpguard events'", "aggregates", len(batch)-i)
			break
		}
		attrs := []any{"uid", e.UID, "user", e.User, "destination", e.Address,
			"port", e.Port, "count", e.Count, "first_seen", e.FirstSeen, "last_seen", e.LastSeen}
		if e.Known() {
			attrs = append(attrs, "pid", e.PID, "comm", e.Comm, "exe", e.Exe, "unit", e.Unit, "container", e.Container, "pool", e.Pool)
		}
		if e.Ref != "" {
			attrs = append(attrs, "ref", e.Ref)
		}
		r.log.Info("SMTP connection attempt "+e.Action, attrs...)
	}
}
