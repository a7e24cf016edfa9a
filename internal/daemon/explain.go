package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
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

// explainQueue is how many explained attempts wait for the aggregator; the
// responder's own concurrency bound keeps it far from full.
const explainQueue = 256

// cookieLookup is what a backend that rewrites destinations in the socket
// (bpf) offers the responder: where a client socket meant to go.
type cookieLookup interface {
	ExplainedDestination(cookie uint64) (netip.AddrPort, bool)
}

// explainer runs the explain responder on loopback while the enforced
// policy is in explain mode, and only then: another mode leaves the port free.
type explainer struct {
	d    *Daemon
	port uint16
	srv  *explain.Server
	want chan bool // the latest wish, coalesced
}

func newExplainer(d *Daemon, port uint16, proc procinfo.Reader, hostname string) *explainer {
	x := &explainer{d: d, port: port, want: make(chan bool, 1)}
	find := explain.Finder{Proc: proc, ByCookie: x.byCookie}
	x.srv = explain.New(explain.Config{
		Locate:   find.Locate,
		UserName: d.rec.userName,
		Record:   d.rec.explained,
		Logger:   d.log.With("component", "explain"),
		Hostname: hostname,
	})
	d.metrics.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "smtpguard_explain_connections_total",
			Help: "Connections the explain responder answered with the reason.",
		}, func() float64 { return float64(x.srv.Served()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "smtpguard_explain_dropped_total",
			Help: "Connections the explain responder closed unanswered because it was serving its maximum at once (a flood).",
		}, func() float64 { return float64(x.srv.Dropped()) }),
	)
	return x
}

// set asks for the responder to run (explain mode enforced) or not.
func (x *explainer) set(on bool) {
	select {
	case <-x.want:
	default:
	}
	x.want <- on
}

// byCookie asks the daemon's backends for a rewritten socket's destination.
func (x *explainer) byCookie(cookie uint64) (netip.AddrPort, bool) {
	var bs []enforce.Backend
	if k := x.d.cfg.Kernel; k != nil {
		for _, h := range k.backends {
			bs = append(bs, h.Backend)
		}
	} else {
		bs = x.d.eng.Backends()
	}
	for _, b := range bs {
		if l, ok := b.(cookieLookup); ok {
			if dst, ok := l.ExplainedDestination(cookie); ok {
				return dst, true
			}
		}
	}
	return netip.AddrPort{}, false
}

// run starts and stops the listeners as set asks, until ctx ends.
func (x *explainer) run(ctx context.Context) {
	var stop func()
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	on := false
	for {
		select {
		case <-ctx.Done():
			return
		case on = <-x.want:
		case <-retry.C:
		}
		switch {
		case on && stop == nil:
			s, err := x.listen(ctx)
			if err != nil {
				x.d.log.Error("cannot start the explain responder: blocked clients are refused without the explanation", "err", err)
				retry.Reset(5 * time.Second)
				continue
			}
			stop = s
			x.d.log.Info("explain responder listening", "port", x.port)
		case !on && stop != nil:
			stop()
			stop = nil
			x.d.log.Info("explain responder stopped")
		}
	}
}

// listen serves on 127.0.0.1 and ::1 (where nft and bpf send connections of
// each family); a host without IPv6 loopback serves IPv4 only.
func (x *explainer) listen(ctx context.Context) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var lc net.ListenConfig
	n := 0
	var errs []error
	for _, host := range []string{"127.0.0.1", "::1"} {
		addr := net.JoinHostPort(host, strconv.Itoa(int(x.port)))
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("listen on %s: %w (choose another port with serve --explain-port)", addr, err))
			continue
		}
		n++
		wg.Go(func() {
			if err := x.srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
				x.d.log.Error("explain responder stopped", "addr", addr, "err", err)
			}
		})
	}
	if n == 0 {
		cancel()
		return nil, errors.Join(errs...)
	}
	for _, err := range errs {
		x.d.log.Warn("explain responder serves one family only", "err", err)
	}
	return func() { cancel(); wg.Wait() }, nil
}

// explained queues an attempt the responder told the client about. It
// never blocks: the responder holds the client while it runs.
func (r *recorder) explained(a explain.Attempt) {
	select {
	case r.explains <- a:
	default:
		r.metrics.dropped.WithLabelValues("queue_full").Inc()
	}
}

// addExplained merges an explained attempt into its aggregate: the process
// and the reference, not a count. The kernel's own event of the same
// connection (the explain rule logs) is what counts it, whether or not the
// responder ever saw the connection.
func (r *recorder) addExplained(aggs map[aggKey]*store.Event, x explain.Attempt) {
	o := x.Origin
	uid := o.UID
	if !o.HasUID {
		uid = ^uint32(0)
	}
	dst := o.Dst.Addr().Unmap()
	minute := x.Time.Unix() / 60
	addr, _, ok := r.fold.destination(uid, minute, dst, o.Dst.Port(), enforce.ActionExplained)
	if !ok {
		r.metrics.dropped.WithLabelValues("aggregate_limit").Inc()
		return
	}
	k := aggKey{uid: uid, dst: addr, port: o.Dst.Port(), minute: minute, action: enforce.ActionExplained}
	a, ok := aggs[k]
	if !ok {
		if len(aggs) >= r.maxAggs {
			r.metrics.dropped.WithLabelValues("aggregate_limit").Inc()
			return
		}
		family := 6
		if dst.Is4() {
			family = 4
		}
		a = &store.Event{UID: uid, User: x.User, Family: family, Address: addr, Port: o.Dst.Port(),
			Action: enforce.ActionExplained, FirstSeen: x.Time, LastSeen: x.Time}
		aggs[k] = a
	}
	a.Ref = x.Ref
	if x.Time.Before(a.FirstSeen) {
		a.FirstSeen = x.Time
	}
	if !x.Time.Before(a.LastSeen) {
		a.LastSeen = x.Time
	}
	if o.PID != 0 {
		p := o.Proc
		a.Process = store.Process{PID: o.PID, Comm: p.Comm, Exe: p.Exe, Cmdline: p.Cmdline, Cwd: p.Cwd,
			Cgroup: p.Cgroup, Unit: p.Unit, Container: p.Container, Pool: p.Pool}
	}
}

// explainWanted reports whether a reconciled policy needs the responder.
func explainWanted(enabled bool, rs policy.Ruleset) bool {
	return enabled && rs.Mode == policy.ModeExplain
}
