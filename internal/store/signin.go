package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SignInCounter is one row of sign-in attempts: an account from one client
// address (both set), an account from anywhere (Remote empty) or a client
// address for any account (Account empty). The engine decides what the
// numbers mean; the store only keeps them.
type SignInCounter struct {
	Account     string
	Remote      string
	Failures    int       // attempts in the current window, those being checked included
	WindowStart time.Time // zero for a row never stored
	LastAt      time.Time
	NextAt      time.Time // no attempt is checked before then
	LockedUntil time.Time // refused until then
}

func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func toMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// SignInCounter reads one row inside the transaction; a missing row comes back
// zero, with its keys filled in.
func (t *Tx) SignInCounter(ctx context.Context, account, remote string) (SignInCounter, error) {
	c := SignInCounter{Account: account, Remote: remote}
	var start, last, next, locked int64
	err := t.tx.QueryRowContext(ctx, `SELECT failures, window_start, last_at, next_at, locked_until
		FROM signin_attempts WHERE account = ? AND remote = ?`, account, remote).Scan(&c.Failures, &start, &last, &next, &locked)
	if errors.Is(err, sql.ErrNoRows) {
		return c, nil
	}
	if err != nil {
		return SignInCounter{}, fmt.Errorf("read sign-in attempts of %q from %q: %w", account, remote, err)
	}
	c.WindowStart, c.LastAt, c.NextAt, c.LockedUntil = fromMilli(start), fromMilli(last), fromMilli(next), fromMilli(locked)
	return c, nil
}

// PutSignInCounter writes one row inside the transaction.
func (t *Tx) PutSignInCounter(ctx context.Context, c SignInCounter) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO signin_attempts (account, remote, failures, window_start, last_at, next_at, locked_until)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (account, remote) DO UPDATE SET failures = excluded.failures, window_start = excluded.window_start,
			last_at = excluded.last_at, next_at = excluded.next_at, locked_until = excluded.locked_until`,
		c.Account, c.Remote, c.Failures, toMilli(c.WindowStart), toMilli(c.LastAt), toMilli(c.NextAt), toMilli(c.LockedUntil))
	if err != nil {
		return fmt.Errorf("write sign-in attempts of %q from %q: %w", c.Account, c.Remote, err)
	}
	return nil
}

// DeleteSignInCounter forgets one row; a missing row is success.
func (t *Tx) DeleteSignInCounter(ctx context.Context, account, remote string) error {
	if _, err := t.tx.ExecContext(ctx, "DELETE FROM signin_attempts WHERE account = ? AND remote = ?", account, remote); err != nil {
		return fmt.Errorf("forget sign-in attempts of %q from %q: %w", account, remote, err)
	}
	return nil
}

// ClearSignInLocks lifts every lockout and slow-down of an account (all its
// addresses and its own row) and returns the rows that were in force at now.
func (t *Tx) ClearSignInLocks(ctx context.Context, account string, now time.Time) ([]SignInCounter, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT remote, failures, locked_until, next_at FROM signin_attempts
		WHERE account = ? ORDER BY remote`, account)
	if err != nil {
		return nil, fmt.Errorf("read sign-in lockouts of %q: %w", account, err)
	}
	var active []SignInCounter
	for rows.Next() {
		c := SignInCounter{Account: account}
		var locked, next int64
		if err := rows.Scan(&c.Remote, &c.Failures, &locked, &next); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read sign-in lockouts of %q: %w", account, err)
		}
		c.LockedUntil, c.NextAt = fromMilli(locked), fromMilli(next)
		if c.LockedUntil.After(now) || c.NextAt.After(now) {
			active = append(active, c)
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("read sign-in lockouts of %q: %w", account, err)
	}
	if _, err := t.tx.ExecContext(ctx, "DELETE FROM signin_attempts WHERE account = ?", account); err != nil {
		return nil, fmt.Errorf("lift sign-in lockouts of %q: %w", account, err)
	}
	return active, nil
}

// PruneSignInCounters forgets rows whose last attempt is older than before
// and that hold no lockout or slow-down at now; then, beyond maxRows rows,
// the stalest of those holding none. A flood of made-up names cannot grow the
// table without bound.
func (t *Tx) PruneSignInCounters(ctx context.Context, before, now time.Time, maxRows int) error {
	if _, err := t.tx.ExecContext(ctx, "DELETE FROM signin_attempts WHERE last_at < ? AND locked_until <= ? AND next_at <= ?",
		before.UnixMilli(), now.UnixMilli(), now.UnixMilli()); err != nil {
		return fmt.Errorf("prune sign-in attempts: %w", err)
	}
	var n int
	if err := t.tx.QueryRowContext(ctx, "SELECT count(*) FROM signin_attempts").Scan(&n); err != nil {
		return fmt.Errorf("prune sign-in attempts: %w", err)
	}
	if n < maxRows {
		return nil
	}
	// Room for the three rows an attempt may add.
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM signin_attempts WHERE rowid IN (
		SELECT rowid FROM signin_attempts WHERE locked_until <= ? AND next_at <= ? ORDER BY last_at LIMIT ?)`,
		now.UnixMilli(), now.UnixMilli(), n-maxRows+3); err != nil {
		return fmt.Errorf("prune sign-in attempts: %w", err)
	}
	return nil
}

// SignInLocks lists the lockouts and slow-downs in force at now, for
// 'smtpguard account list' and the accounts page.
func (s *Store) SignInLocks(ctx context.Context, now time.Time) ([]SignInCounter, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT account, remote, failures, window_start, last_at, next_at, locked_until
		FROM signin_attempts WHERE locked_until > ? OR next_at > ? ORDER BY account, remote`, now.UnixMilli(), now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read sign-in lockouts: %w", err)
	}
	defer rows.Close()
	var out []SignInCounter
	for rows.Next() {
		var c SignInCounter
		var start, last, next, locked int64
		if err := rows.Scan(&c.Account, &c.Remote, &c.Failures, &start, &last, &next, &locked); err != nil {
			return nil, fmt.Errorf("read sign-in lockouts: %w", err)
		}
		c.WindowStart, c.LastAt, c.NextAt, c.LockedUntil = fromMilli(start), fromMilli(last), fromMilli(next), fromMilli(locked)
		out = append(out, c)
	}
	return out, rows.Err()
}
