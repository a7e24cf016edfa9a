package daemon

import (
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce/remote"
)

// busyRetry is how soon a reconcile is tried again while a change holds the
// state lock; repairs meanwhile follow each kernel change notification.
const busyRetry = 50 * time.Millisecond

// serveSocket answers the CLI on the daemon's socket with the engine's
// backends (the Kernel's, when configured) until ctx ends.
func (d *Daemon) serveSocket(ctx context.Context, ln *net.UnixListener) {
	srv := &remote.Server{
		Backends: d.eng.Backends(),
		Logger:   d.cfg.Logger.With("component", "socket"),
		Info: func() remote.Info {
			return remote.Info{Recording: d.eventStreams.Load() > 0}
		},
	}
	d.log.Info("serving the CLI", "socket", ln.Addr().String())
	if err := srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
		d.log.Error("daemon socket stopped; CLI commands now fail while the daemon runs", "socket", ln.Addr().String(), "err", err)
	}
}

// repairLast restores what the kernel last enforced while a change holds the
// state lock, so a slow change never leaves a flushed ruleset unrepaired.
func (d *Daemon) repairLast(ctx context.Context) {
	d.mu.Lock()
	enabled := d.lastEnabled
	d.mu.Unlock()
	// Only an enabled policy is restored: rules a disabled policy left
	// behind (and a verify happened to match) are not to be brought back.
	if d.cfg.Kernel == nil || !enabled {
		return
	}
	repaired, err := d.cfg.Kernel.RepairLast(ctx)
	if err != nil && ctx.Err() == nil {
		d.metrics.reconcileFails.Inc()
		if d.setErr(err) {
			d.log.Error("cannot repair the kernel rules while a change is in progress; retrying", "err", err)
		}
	}
	for _, r := range repaired {
		d.metrics.driftRepairs.Inc()
		d.metrics.applyDuration.Observe(r.Took.Seconds())
		d.log.Warn("kernel rules were changed outside smtpguard during a change in progress; restored the rules last enforced",
			"backend", r.Backend, "drift", r.Drift, "took", r.Took)
		d.recordRepair(r.Backend, r.Drift)
	}
}

// metricsAuth guards /metrics, which names blocked users: with a token
// configured it requires "Authorization: Bearer TOKEN"; when a token is
// required but none is configured, nobody gets in.
func (d *Daemon) metricsAuth(next http.Handler) http.Handler {
	if d.cfg.MetricsToken == "" && !d.cfg.RequireMetricsToken {
		return next // loopback only: the listener is the boundary
	}
	want := []byte(d.cfg.MetricsToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || len(want) == 0 || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="smtpguard metrics"`)
			http.Error(w, "metrics need a bearer token (serve --metrics-token-file)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
