package daemon

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// activate makes name the backend whose streams run; streamLoop switches
// them when it changes.
func (d *Daemon) activate(name string) {
	d.mu.Lock()
	d.active = name
	d.mu.Unlock()
	select {
	case d.activeKick <- struct{}{}:
	default:
	}
}

// activeBackend is the backend of the stored policy: "auto" (never
// enabled) is the best candidate's, a name this build lacks has none.
func (d *Daemon) activeBackend(name string) enforce.Backend {
	bs := d.eng.Backends()
	for _, b := range bs {
		if b.Name() == name {
			return b
		}
	}
	if name == policy.BackendAuto && len(bs) > 0 {
		return bs[0]
	}
	return nil
}

// streamLoop runs the Watch and Events streams of the active backend only,
// and restarts them on the new one when the active backend changes. A
// backend without change notifications gets no Watch: the periodic verify
// is its repair.
func (d *Daemon) streamLoop(ctx context.Context) {
	var (
		current string
		stop    = func() {}
	)
	defer func() { stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.activeKick:
		}
		d.mu.Lock()
		name := d.active
		d.mu.Unlock()
		if name == current {
			continue
		}
		stop()
		current, stop = name, func() {}
		b := d.activeBackend(name)
		if b == nil {
			d.log.Warn("no backend of this build has the stored policy's name; not watching the kernel or recording attempts", "backend", name)
			continue
		}
		stop = d.startStreams(ctx, b)
	}
}

// startStreams starts b's streams and returns what stops them and waits.
func (d *Daemon) startStreams(ctx context.Context, b enforce.Backend) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if b.Describe().ChangeNotifications {
		wg.Go(func() {
			d.supervise(ctx, b.Name()+" watch", true, func(ctx context.Context) error { return b.Watch(ctx, d.Kick) })
		})
	} else {
		d.log.Info("backend has no change notifications; drift is repaired by the periodic verify", "backend", b.Name(), "interval", d.cfg.VerifyInterval)
	}
	wg.Go(func() {
		d.supervise(ctx, b.Name()+" events", false, func(ctx context.Context) error {
			d.eventStreams.Add(1)
			defer d.eventStreams.Add(-1)
			return b.Events(ctx, d.rec.sink)
		})
	})
	d.log.Debug("backend streams started", "backend", b.Name())
	d.Kick() // changes made while no stream ran are seen by a pass
	return func() { cancel(); wg.Wait() }
}

// supervise restarts a backend stream that ends early, with backoff. A watch
// (optional) that cannot work here (ErrNotSupported) is not restarted: the
// periodic verify stands in for it, and retrying would only log the same
// failure every 30 s.
func (d *Daemon) supervise(ctx context.Context, what string, optional bool, fn func(context.Context) error) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := fn(ctx)
		if ctx.Err() != nil {
			return
		}
		if optional && errors.Is(err, enforce.ErrNotSupported) {
			d.log.Warn("backend stream not supported here; relying on the periodic verify", "stream", what, "err", err, "interval", d.cfg.VerifyInterval)
			d.Kick()
			return
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		d.log.Warn("backend stream ended; restarting", "stream", what, "err", err, "retry_in", backoff)
		d.Kick() // we may have missed changes meanwhile
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}
