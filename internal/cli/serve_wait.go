package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/engine"
)

// serveRetry is how often a daemon waiting for a readable database tries it.
const serveRetry = 2 * time.Second

// openForServe opens the engine for the daemon. A database that exists but
// cannot be read must not stop the daemon: exiting would leave nothing to
// report why (and systemd restarting it in a loop), and converging to
// anything would be a guess. The kernel is not touched, so its rules stay in
// force; the daemon logs the error, answers /healthz with 503 and the error
// when it listens on loopback, and retries until the database opens
// (restored from a backup) or ctx ends, when it returns a nil engine.
func (e *env) openForServe(ctx context.Context, logger *slog.Logger, backends []enforce.Backend, listen string, loopback bool) (*engine.Engine, error) {
	eng, err := e.openEngine(ctx, logger, backends)
	if err == nil || !errors.Is(err, engine.ErrDatabaseUnreadable) {
		return eng, err
	}
	logger.Error("cannot read the database; the kernel's rules stay as they are; retrying", "err", err, "retry_every", serveRetry)
	health := &unhealthy{err: err}
	if listen != "" && loopback {
		stop, err := health.serve(listen)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	tick := time.NewTicker(serveRetry)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case <-tick.C:
		}
		eng, err := e.openEngine(ctx, logger, backends)
		switch {
		case err == nil:
			logger.Info("the database is readable again; starting")
			return eng, nil
		case !errors.Is(err, engine.ErrDatabaseUnreadable):
			return nil, err
		}
		health.set(err)
	}
}

// unhealthy answers /healthz with the reason the daemon cannot start.
type unhealthy struct {
	mu  sync.Mutex // protects err
	err error
}

func (u *unhealthy) set(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.err = err
}

func (u *unhealthy) serve(listen string) (stop func(), err error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (choose another address with --listen)", listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		msg := u.err.Error()
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]string{"status": "error", "error": msg})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	return func() { srv.Close(); <-done }, nil
}
