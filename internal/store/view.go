package store

import (
	"context"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// View is the read-only side of a Store. The engine hands it out so that the
// CLI, the web UI and the daemon can read freely while every write goes
// through an engine operation (one transaction with its audit record). It is
// a struct, not an interface, so it cannot be converted back into the Store.
type View struct{ s *Store }

// View returns the store's read-only side.
func (s *Store) View() View { return View{s} }

// Policy is Store.Policy.
func (v View) Policy(ctx context.Context) (policy.Policy, Meta, error) { return v.s.Policy(ctx) }

// Revision is Store.Revision.
func (v View) Revision(ctx context.Context) (int64, error) { return v.s.Revision(ctx) }

// Account is Store.Account.
func (v View) Account(ctx context.Context, name string) (Account, error) {
	return v.s.Account(ctx, name)
}

// Accounts is Store.Accounts.
func (v View) Accounts(ctx context.Context) ([]Account, error) { return v.s.Accounts(ctx) }

// PasswordHash is Store.PasswordHash.
func (v View) PasswordHash(ctx context.Context, name string) (string, error) {
	return v.s.PasswordHash(ctx, name)
}

// Tokens is Store.Tokens.
func (v View) Tokens(ctx context.Context) ([]Token, error) { return v.s.Tokens(ctx) }

// TokenBySecret is Store.TokenBySecret.
func (v View) TokenBySecret(ctx context.Context, secret string) (Token, error) {
	return v.s.TokenBySecret(ctx, secret)
}

// SessionBySecret is Store.SessionBySecret.
func (v View) SessionBySecret(ctx context.Context, secret string) (Session, error) {
	return v.s.SessionBySecret(ctx, secret)
}

// SignInLocks is Store.SignInLocks.
func (v View) SignInLocks(ctx context.Context, now time.Time) ([]SignInCounter, error) {
	return v.s.SignInLocks(ctx, now)
}

// Audit is Store.Audit.
func (v View) Audit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	return v.s.Audit(ctx, f)
}

// Events is Store.Events.
func (v View) Events(ctx context.Context, f EventFilter) ([]Event, error) { return v.s.Events(ctx, f) }

// DNSCache is Store.DNSCache.
func (v View) DNSCache(ctx context.Context) (map[string]DNSEntry, error) { return v.s.DNSCache(ctx) }

// SchemaVersion is Store.SchemaVersion.
func (v View) SchemaVersion(ctx context.Context) (int, error) { return v.s.SchemaVersion(ctx) }

// HoldsRevision is Store.HoldsRevision.
func (v View) HoldsRevision(ctx context.Context) (int64, error) { return v.s.HoldsRevision(ctx) }
