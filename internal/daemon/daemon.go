// Package daemon is "smtpguard serve": it converges the kernel to the stored
// policy at start, repairs drift as soon as the backend reports a change (with
// a periodic verify as a backstop), follows policy changes made by other
// processes and account changes in /etc/passwd and /etc/group, records blocked
// attempts with the offending user, and serves Prometheus metrics.
//
// Stopping the daemon leaves enforcement in the kernel: only "smtpguard
// disable" lifts the restriction.
package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/remote"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/explain"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/procinfo"
	"github.com/smtpguard/smtpguard/internal/webhook"
)

// Config configures a Daemon. Zero durations and sizes take the defaults.
type Config struct {
	Engine *engine.Engine
	Logger *slog.Logger
	// Listen is the address of /metrics, /healthz and Web; "" serves nothing.
	Listen string
	// Web, when set, serves every other path on Listen (the web UI and API).
	Web http.Handler
	// TLS, when set, serves Listen over HTTPS with this configuration
	// (certificates included).
	TLS *tls.Config
	// MetricsToken, when set, is the bearer token /metrics requires: it lists
	// blocked users' names. RequireMetricsToken refuses /metrics (401)
	// without it, for a Listen address that is not loopback.
	MetricsToken        string
	RequireMetricsToken bool

	// StateDir, when set, is where the daemon takes its pid file (refusing to
	// start while another daemon holds it) and serves its socket, through
	// which the CLI changes the kernel while the daemon runs.
	StateDir string
	// Kernel holds the engine's backends (NewKernel) so drift can be repaired
	// while a change holds the state lock; nil repairs only between changes.
	Kernel *Kernel

	VerifyInterval time.Duration // periodic verify backstop (30s)
	PollInterval   time.Duration // store revision and account files (250ms)
	FlushInterval  time.Duration // event aggregates to the store (1s)
	Retention      time.Duration // how long events are kept (30 days)
	QueueSize      int           // events between kernel reader and aggregator (4096)
	MaxAggregates  int           // distinct aggregates between flushes (10000)
	LogLines       int           // log lines per flush before summarising (20)
	DNSMinTTL      time.Duration // floor for re-resolving exception host names (30s)
	DNSMaxTTL      time.Duration // ceiling (1h)
	// NotifyCommand, when set, is run for users whose connections were
	// blocked, at most once per NotifyInterval per user (10m).
	NotifyCommand  string
	NotifyInterval time.Duration
	// WebhookURL, when set, receives a signed JSON POST for the same
	// blocked-attempt notifications (same per-user interval) and for every
	// hold and release (notify.go, internal/webhook). WebhookSecret keys the
	// signature; Webhook tunes the sender (its URL, Secret and Failed are
	// set from here); Hostname goes into each body.
	WebhookURL    string
	WebhookSecret []byte
	Webhook       webhook.Config
	Hostname      string
	// Service, when set, tells systemd when the daemon is ready and feeds
	// its watchdog from the reconcile loop (systemd.go).
	Service *ServiceNotifier
	// ProcRoot is where the processes behind events are looked up
	// (procinfo.DefaultRoot); tests give a fake tree.
	ProcRoot string
	// ExplainPort is where the explain responder listens on loopback while
	// the policy is in explain mode (policy.DefaultExplainPort); give the
	// Kernel the same one (Kernel.SetExplainPort). Its replies name this
	// server by Hostname.
	ExplainPort uint16
	// holdClock is the hold keeper's time (holds.go); nil is the real one.
	holdClock holdClock
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.VerifyInterval, 30*time.Second)
	def(&c.PollInterval, 250*time.Millisecond)
	def(&c.FlushInterval, time.Second)
	def(&c.Retention, 30*24*time.Hour)
	def(&c.DNSMinTTL, 30*time.Second)
	def(&c.DNSMaxTTL, time.Hour)
	def(&c.NotifyInterval, 10*time.Minute)
	if c.ExplainPort == 0 {
		c.ExplainPort = policy.DefaultExplainPort
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4096
	}
	if c.MaxAggregates <= 0 {
		c.MaxAggregates = 10000
	}
	if c.LogLines <= 0 {
		c.LogLines = 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Daemon runs the reconcile loop, event recording and the HTTP listener.
type Daemon struct {
	cfg     Config
	eng     *engine.Engine
	log     *slog.Logger
	metrics *metrics
	rec     *recorder
	explain *explainer
	holds   *holdKeeper   // automatic holds, hold expiry and notices (holds.go)
	kick    chan struct{} // coalesced requests to reconcile
	// kicks counts Kick calls; passed is the value of kicks when the latest
	// finished reconcile pass (or lock-free repair) started. Tests wait for
	// passed to reach a kick of theirs: the pass that proves a negative.
	kicks, passed atomic.Int64
	// eventStreams counts the backend event streams running now.
	eventStreams atomic.Int32
	// activeKick tells streamLoop that active changed.
	activeKick chan struct{}

	mu sync.Mutex // protects the following fields
	// lastErr is the most recent reconcile error, for /healthz.
	lastErr      error
	lastRevision int64
	lastRuleset  *policy.Ruleset
	lastEnabled  bool       // the policy of the last reconcile was enabled
	repairs      RepairInfo // drift repairs since start (state.go)
	// active names the backend whose Watch and Events streams should run:
	// the stored policy's (streams.go).
	active string

	audit repairAudit // writes repair records off the reconcile loop (state.go)
}

// New prepares a daemon; Run starts it.
func New(cfg Config) (*Daemon, error) {
	if cfg.Engine == nil {
		return nil, errors.New("daemon needs an engine")
	}
	cfg.defaults()
	m := newMetrics()
	log := cfg.Logger.With("component", "daemon")
	d := &Daemon{
		cfg:        cfg,
		eng:        cfg.Engine,
		log:        log,
		metrics:    m,
		kick:       make(chan struct{}, 1),
		activeKick: make(chan struct{}, 1),
		rec: &recorder{
			queue:    make(chan enforce.Event, cfg.QueueSize),
			explains: make(chan explain.Attempt, explainQueue),
			store:    cfg.Engine,
			metrics:  m,
			log:      cfg.Logger.With("component", "events"),
			maxAggs:  cfg.MaxAggregates,
			maxLines: cfg.LogLines,
			proc:     procinfo.Reader{Root: cfg.ProcRoot},
		},
	}
	m.registry.MustRegister(newAllowedCollector(d.allowedCounts, d.rec.userName))
	d.holds = newHoldKeeper(cfg.Engine, m, cfg.Logger.With("component", "holds"), cfg.holdClock)
	d.holds.announce, d.holds.changed = d.announceHold, d.Kick
	d.rec.holds = d.holds
	d.explain = newExplainer(d, cfg.ExplainPort, d.rec.proc, cfg.Hostname)
	if cfg.NotifyCommand != "" || cfg.WebhookURL != "" {
		var hook *webhook.Sender
		if cfg.WebhookURL != "" {
			wc := cfg.Webhook
			wc.URL, wc.Secret, wc.Logger = cfg.WebhookURL, cfg.WebhookSecret, cfg.Logger.With("component", "webhook")
			wc.Failed = func(reason string) { m.webhookFailures.WithLabelValues(reason).Inc() }
			var err error
			if hook, err = webhook.New(wc); err != nil {
				return nil, err
			}
		}
		d.rec.notify = newNotifier(cfg.NotifyCommand, hook, cfg.Hostname, cfg.NotifyInterval, cfg.Logger.With("component", "notify"), m)
	}
	return d, nil
}

// Kick asks for a reconcile soon; many kicks coalesce into one.
func (d *Daemon) Kick() {
	d.kicks.Add(1)
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run converges, then serves until ctx ends. It returns an error only when it
// cannot start; later failures are logged, counted and retried.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.audit.wg.Wait() // repair records in flight, before the engine closes
	if d.cfg.StateDir != "" {
		release, err := lockPIDFile(filepath.Join(d.cfg.StateDir, PIDFile))
		if err != nil {
			return err
		}
		defer release()
		ctl, err := remote.Listen(remote.SocketPath(d.cfg.StateDir))
		if err != nil {
			return err
		}
		// Answer the CLI from the start: a command run while we converge
		// must find the daemon, not change the kernel behind its back.
		ctlCtx, stop := context.WithCancel(ctx)
		served := make(chan struct{})
		go func() { defer close(served); d.serveSocket(ctlCtx, ctl) }()
		defer func() { stop(); <-served }()
	}
	// Stamp the account files and policy revision before converging, so a
	// change made while we start is seen either by the first reconcile or by
	// the poll loop, never by neither.
	files := d.eng.AccountFiles()
	stamps := make([]fileStamp, len(files))
	for i, f := range files {
		stamps[i] = stamp(f)
	}
	rev, _ := d.eng.Store().Revision(ctx)
	if dir, err := d.eng.Directory(); err == nil {
		d.rec.setDirectory(dir)
	}
	r, err := d.eng.Reconcile(ctx, true)
	if err != nil {
		// Keep running: the loop retries with backoff and /healthz reports it.
		d.log.Error("cannot converge the kernel to the stored policy at start", "err", err)
		d.setErr(err)
		if p, _, perr := d.eng.Store().Policy(ctx); perr == nil {
			d.activate(p.Backend) // watch and record what is stored meanwhile
		}
	} else {
		d.observe(r, true)
	}

	var srv *http.Server
	var ln net.Listener
	if d.cfg.Listen != "" {
		ln, err = net.Listen("tcp", d.cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w (choose another address with --listen)", d.cfg.Listen, err)
		}
		srv = &http.Server{
			Handler:           d.Handler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug), // TLS handshake noise from scanners
		}
		if d.cfg.TLS != nil {
			srv.TLSConfig = d.cfg.TLS.Clone()
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { d.reconcileLoop(ctx) })
	wg.Go(func() { d.pollLoop(ctx, files, stamps, rev) })
	wg.Go(func() { d.rec.run(ctx, d.cfg.FlushInterval) })
	wg.Go(func() { d.explain.run(ctx) })
	wg.Go(func() { d.pruneLoop(ctx) })
	wg.Go(func() { d.dnsLoop(ctx) })
	wg.Go(func() { d.holds.run(ctx) })
	if d.rec.notify != nil {
		wg.Go(func() { d.rec.notify.run(ctx) })
	}
	wg.Go(func() { d.streamLoop(ctx) })
	wg.Go(func() { d.addrLoop(ctx) })
	if srv != nil {
		wg.Go(func() {
			var err error
			if srv.TLSConfig != nil {
				err = srv.ServeTLS(ln, "", "") // certificates come with TLSConfig
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("HTTP server stopped", "err", err)
			}
		})
		d.log.Info("serving metrics", "addr", ln.Addr().String(), "tls", srv.TLSConfig != nil, "web", d.cfg.Web != nil)
	}
	d.notifyReady()
	d.log.Info("smtpguard daemon running", "enabled", r.Enabled, "backend", r.Backend)
	<-ctx.Done()
	if srv != nil {
		shutdown, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		srv.Shutdown(shutdown)
		stop()
	}
	cancel()
	wg.Wait()
	d.log.Info("smtpguard daemon stopped; enforcement stays in the kernel")
	return nil
}

// reconcileLoop is the single goroutine that changes kernel state on the
// daemon's behalf.
func (d *Daemon) reconcileLoop(ctx context.Context) {
	const minGap = 10 * time.Millisecond // rate limit under a storm of notifications
	verify := time.NewTicker(d.cfg.VerifyInterval)
	defer verify.Stop()
	backoff := time.Duration(0)
	var retry <-chan time.Time
	alive, stopAlive := d.cfg.Service.heartbeat()
	defer stopAlive()
	for {
		select {
		case <-ctx.Done():
			return
		case <-alive: // a loop stuck in Reconcile stops feeding the watchdog
			d.cfg.Service.alive()
			continue
		case <-d.kick:
		case <-verify.C:
			d.refreshLocal(ctx)
		case <-retry:
		}
		started := d.kicks.Load()
		r, err := d.eng.TryReconcile(ctx, false)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, engine.ErrBusy) {
			// A change holds the lock, maybe for seconds: repair from what
			// was last enforced now, reconcile properly once it is free.
			d.repairLast(ctx)
			d.passed.Store(started)
			retry = time.After(busyRetry)
			continue
		}
		if err != nil {
			d.metrics.reconcileFails.Inc()
			backoff = min(max(2*backoff, 100*time.Millisecond), 30*time.Second)
			retry = time.After(backoff)
			if d.setErr(err) {
				d.log.Error("cannot make the kernel match the policy; retrying", "err", err, "retry_in", backoff)
			}
			d.passed.Store(started)
			continue
		}
		backoff, retry = 0, nil
		d.setErr(nil)
		d.observe(r, false)
		d.passed.Store(started)
		select {
		case <-ctx.Done():
			return
		case <-time.After(minGap):
		}
	}
}

// observe updates metrics and logs after a successful reconcile. A change of
// kernel state for an unchanged policy and unchanged accounts is drift someone
// else caused; otherwise it is the policy or the accounts moving on.
func (d *Daemon) observe(r engine.Reconciled, atStart bool) {
	d.mu.Lock()
	sameDesire := d.lastRuleset != nil && d.lastRevision == r.Revision && rulesetEqual(*d.lastRuleset, r.Ruleset)
	d.lastRevision = r.Revision
	rs := r.Ruleset
	d.lastRuleset = &rs
	d.lastEnabled = r.Enabled
	d.mu.Unlock()
	d.activate(r.Backend)
	d.explain.set(explainWanted(r.Enabled, r.Ruleset))

	d.metrics.lastVerify.SetToCurrentTime()
	d.metrics.enabled.Set(b2f(r.Enabled))
	d.metrics.backend.Reset()
	if r.Enabled {
		d.metrics.backend.WithLabelValues(r.Backend).Set(1)
		d.metrics.allowedUIDs.Set(float64(len(r.Ruleset.UIDs)))
	} else {
		d.metrics.allowedUIDs.Set(0)
	}
	if !r.Applied {
		return
	}
	d.metrics.applyDuration.Observe(r.Took.Seconds())
	switch {
	case atStart:
		d.log.Info("converged kernel rules to the stored policy", "backend", r.Backend, "drift", r.Drift)
	case sameDesire:
		d.metrics.driftRepairs.Inc()
		d.log.Warn("kernel rules were changed outside smtpguard; restored", "backend", r.Backend, "drift", r.Drift, "took", r.Took)
		d.recordRepair(r.Backend, r.Drift)
	default:
		d.log.Info("applied updated policy or accounts", "backend", r.Backend, "allowed_uids", len(r.Ruleset.UIDs), "took", r.Took)
	}
}

func rulesetEqual(a, b policy.Ruleset) bool {
	return a.Equal(b)
}

// setErr records the reconcile error and reports whether it is new, so a
// persistent failure is logged once, not every retry.
func (d *Daemon) setErr(err error) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := (err == nil) != (d.lastErr == nil) || (err != nil && err.Error() != d.lastErr.Error())
	d.lastErr = err
	return changed
}

// fileStamp identifies a version of a file: editors and useradd replace
// /etc/passwd by rename, which changes the inode.
type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := statIno(fi); ok {
		s.ino = st
	}
	return s
}

// pollLoop notices policy changes by other processes (store revision) and
// account changes (passwd, group) and asks for a reconcile.
func (d *Daemon) pollLoop(ctx context.Context, files []string, stamps []fileStamp, rev int64) {
	tick := time.NewTicker(d.cfg.PollInterval)
	defer tick.Stop()
	access, _ := d.eng.ResolvedAccess(ctx)
	holdsRev, _ := d.eng.Store().HoldsRevision(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		changed := false
		for i, f := range files {
			if s := stamp(f); s != stamps[i] {
				stamps[i], changed = s, true
			}
		}
		if changed {
			if dir, err := d.eng.Directory(); err == nil {
				d.rec.setDirectory(dir)
			}
			// Most account changes (a password, a shell) alter nobody's
			// access: say so only when the allowed set changes.
			if now, err := d.eng.ResolvedAccess(ctx); err != nil || !now.Equal(access) {
				access = now
				d.log.Info("user or group accounts changed; re-resolving allowed uids")
			}
			d.Kick()
		}
		if r, err := d.eng.Store().Revision(ctx); err == nil && r != rev {
			rev = r
			d.Kick()
		}
		if r, err := d.eng.Store().HoldsRevision(ctx); err == nil && r != holdsRev {
			holdsRev = r
			d.holds.Poke()
			d.Kick()
		}
	}
}

// pruneLoop deletes events past the retention period, at start and hourly.
func (d *Daemon) pruneLoop(ctx context.Context) {
	for {
		n, err := d.eng.PruneEvents(ctx, time.Now().Add(-d.cfg.Retention))
		if err != nil && ctx.Err() == nil {
			d.log.Warn("cannot prune old events", "err", err)
		} else if n > 0 {
			d.log.Info("pruned old blocked-attempt events", "aggregates", n, "retention", d.cfg.Retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}

// Handler serves /metrics and /healthz, and the web UI when configured.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	if d.cfg.Web != nil {
		mux.Handle("/", d.cfg.Web)
	}
	mux.Handle("GET /metrics", d.metricsAuth(promhttp.HandlerFor(d.metrics.registry, promhttp.HandlerOpts{})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		err := d.lastErr
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		body := map[string]string{"status": "ok"}
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			body = map[string]string{"status": "error", "error": err.Error()}
		}
		json.NewEncoder(w).Encode(body)
	})
	return mux
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
