package engine

import (
	"context"
	"time"

	"github.com/smtpguard/smtpguard/internal/store"
)

// Bookkeeping of the web UI's sessions and of API token use. These writes
// change no policy, account or privilege, so they carry no audit record; they
// go through the engine only because nothing else holds the store for
// writing.

// TouchSession records a session's activity, for the idle timeout.
func (e *Engine) TouchSession(ctx context.Context, secret string, at time.Time) error {
	return e.store.TouchSession(ctx, secret, at)
}

// EndSession signs a session out; ending a missing one is success.
func (e *Engine) EndSession(ctx context.Context, secret string) error {
	return e.store.DeleteSession(ctx, secret)
}

// PruneSessions deletes expired and idle sessions.
func (e *Engine) PruneSessions(ctx context.Context, now, idleCutoff time.Time) (int64, error) {
	return e.store.PruneSessions(ctx, now, idleCutoff)
}

// SetFlash leaves one message for a session's next page.
func (e *Engine) SetFlash(ctx context.Context, secret, msg string) error {
	return e.store.SetFlash(ctx, secret, msg)
}

// TakeFlash returns and clears a session's message.
func (e *Engine) TakeFlash(ctx context.Context, secret string) (string, error) {
	return e.store.TakeFlash(ctx, secret)
}

// TouchToken records an API token's use.
func (e *Engine) TouchToken(ctx context.Context, name string, at time.Time) error {
	return e.store.TouchToken(ctx, name, at)
}

// RecordEvents stores aggregates of blocked attempts, for the daemon.
func (e *Engine) RecordEvents(ctx context.Context, events []store.Event) error {
	return e.store.RecordEvents(ctx, events)
}

// PruneEvents deletes blocked-attempt aggregates last seen before the
// cutoff, for the daemon's retention.
func (e *Engine) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	return e.store.PruneEvents(ctx, before)
}
