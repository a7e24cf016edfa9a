package store

import (
	"context"
	"fmt"
	"time"
)

// SignInDetail is the audit detail of a sign-in to an account, failed or
// not.
func SignInDetail(account string) string { return "account " + account }

// FailedSignIns is what the audit log holds of the failed sign-ins to one
// account since its last successful one.
type FailedSignIns struct {
	Count    int
	LastAt   time.Time // the newest failure
	LastFrom string    // its client address
}

// FailedSignInsSince counts the failed sign-ins to account recorded after
// its last successful one, searching back to since at most (the audit log
// may be long; the audit_at index bounds the search).
func (t *Tx) FailedSignInsSince(ctx context.Context, account string, since time.Time) (FailedSignIns, error) {
	detail := SignInDetail(account)
	var lastOK int64
	if err := t.tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM audit
		WHERE at >= ? AND operation = 'sign-in' AND detail = ? AND outcome = 'ok'`, since.UnixMilli(), detail).Scan(&lastOK); err != nil {
		return FailedSignIns{}, fmt.Errorf("read the sign-ins of %q: %w", account, err)
	}
	var f FailedSignIns
	var at int64
	if err := t.tx.QueryRowContext(ctx, `SELECT count(*), coalesce(max(at), 0), coalesce((SELECT remote FROM audit
			WHERE at >= ? AND id > ? AND operation = 'sign-in' AND detail = ? AND outcome <> 'ok' ORDER BY id DESC LIMIT 1), '')
		FROM audit WHERE at >= ? AND id > ? AND operation = 'sign-in' AND detail = ? AND outcome <> 'ok'`,
		since.UnixMilli(), lastOK, detail, since.UnixMilli(), lastOK, detail).Scan(&f.Count, &at, &f.LastFrom); err != nil {
		return FailedSignIns{}, fmt.Errorf("read the failed sign-ins of %q: %w", account, err)
	}
	if f.Count > 0 {
		f.LastAt = time.UnixMilli(at)
	}
	return f, nil
}
