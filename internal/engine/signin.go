package engine

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/smtpguard/smtpguard/internal/store"
)

// Sign-in lockout. An attempt is counted, in one store transaction, before its
// password is checked, so attempts beyond a limit are refused without a check
// even when they all arrive at once. The counts live in the store, so a
// restart forgets nothing. What is counted is chosen so the lockout hurts the
// one guessing, not the account's owner:
//   - an account from one client address is locked out after PairFailures
//     failures: the guesser's address, not the owner's;
//   - an account from anywhere, and a client address for any account, are
//     slowed down (a growing wait between checked attempts, at most
//     MaxDelay) once they pass AccountFree and AddressFree failures, never
//     locked: spreading guesses over many addresses, or many names over one
//     address, gains little, and the owner waits a minute at most.
//
// Clients that share an address with the guesser (127.0.0.1 through an SSH
// tunnel, a NAT) share its lockout too: an administrator lifts it with
// UnlockAccount ('smtpguard account unlock'). Failed sign-ins and lockouts are
// recorded in the audit log; attempts refused unchecked are not, so a flood
// cannot fill it.

// Lockout is the sign-in lockout's limits. Zero fields take the defaults.
type Lockout struct {
	PairFailures int           // failures of one account from one address before it is locked (5)
	LockFor      time.Duration // how long that lock lasts (15m)
	Window       time.Duration // an account's failures from one address are forgotten this long after the first; a slow-down, after this long without attempts (15m)
	AccountFree  int           // failures of one account from anywhere before it is slowed down (5)
	AddressFree  int           // failures from one address, any account, before it is slowed down (20)
	MaxDelay     time.Duration // the slow-down's longest wait (1m)
	// MaxRows bounds the counters kept (10000): beyond it the stalest that
	// hold no lock or wait are forgotten, so a flood of made-up names from
	// many addresses cannot grow the database without bound.
	MaxRows int
}

func (l Lockout) withDefaults() Lockout {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defN := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defN(&l.PairFailures, 5)
	defN(&l.AccountFree, 5)
	defN(&l.AddressFree, 20)
	defN(&l.MaxRows, 10000)
	def(&l.LockFor, 15*time.Minute)
	def(&l.Window, 15*time.Minute)
	def(&l.MaxDelay, time.Minute)
	return l
}

// SignInRefused is the error of an attempt refused without a password check.
type SignInRefused struct {
	RetryAfter time.Duration
	Locked     bool // the account is locked for this client address; else slowed down
}

func (r *SignInRefused) Error() string {
	if r.Locked {
		return fmt.Sprintf("too many failed sign-ins from this address: locked for %s", r.RetryAfter.Round(time.Second))
	}
	return fmt.Sprintf("too many failed sign-ins: try again in %s", r.RetryAfter.Round(time.Second))
}

// SignInAttempt is an attempt counted by BeginSignIn; finish it with exactly
// one of FailSignIn, SignIn or AbandonSignIn.
type SignInAttempt struct {
	Account, Remote string
	lim             Lockout
}

// fresh restarts a counter that no longer holds anything against the next
// attempt: a lock that ran out; for an account from one address, a window
// since its first failure that has passed; for the slowed-down counters, a
// whole window without attempts, so a steady guesser stays slowed down.
func fresh(c store.SignInCounter, l Lockout, now time.Time) store.SignInCounter {
	pair := c.Account != "" && c.Remote != ""
	locked := !c.LockedUntil.IsZero()
	switch {
	case c.WindowStart.IsZero(),
		locked && !now.Before(c.LockedUntil),
		!locked && pair && now.Sub(c.WindowStart) >= l.Window,
		!pair && now.Sub(c.LastAt) >= l.Window && !now.Before(c.NextAt):
		c.Failures, c.WindowStart, c.NextAt, c.LockedUntil = 0, now, time.Time{}, time.Time{}
	}
	return c
}

// AddressKey is what the lockout counts a client address as: itself for
// IPv4, its /64 for IPv6, since one host or customer is usually given a
// whole /64 and could otherwise take a fresh address for every guess.
func AddressKey(remote string) string {
	a, err := netip.ParseAddr(remote)
	if err != nil {
		return remote
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// slowDown is the wait before the next checked attempt once a counter has n
// failures, free of them without any: 1s, 2s, 4s ... up to max.
func slowDown(n, free int, max time.Duration) time.Duration {
	if n <= free {
		return 0
	}
	d := time.Second
	for i := free + 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// BeginSignIn counts an attempt to sign in to account from remote (a client
// address, counted as AddressKey), or refuses it (*SignInRefused) without
// counting when a limit is reached. Only a counted attempt may check a
// password.
func (e *Engine) BeginSignIn(ctx context.Context, lim Lockout, account, remote string) (SignInAttempt, error) {
	lim = lim.withDefaults()
	remote = AddressKey(remote)
	now := e.cfg.Now()
	tx, err := e.store.Begin(ctx)
	if err != nil {
		return SignInAttempt{}, err
	}
	defer tx.Rollback()
	if err := tx.PruneSignInCounters(ctx, now.Add(-max(lim.Window, lim.LockFor)-lim.MaxDelay), now, lim.MaxRows); err != nil {
		return SignInAttempt{}, err
	}
	var cs [3]store.SignInCounter // pair, account, address
	for i, key := range [3][2]string{{account, remote}, {account, ""}, {"", remote}} {
		c, err := tx.SignInCounter(ctx, key[0], key[1])
		if err != nil {
			return SignInAttempt{}, err
		}
		cs[i] = fresh(c, lim, now)
	}
	pair, acct, addr := &cs[0], &cs[1], &cs[2]
	switch {
	case now.Before(pair.LockedUntil):
		return SignInAttempt{}, &SignInRefused{RetryAfter: pair.LockedUntil.Sub(now), Locked: true}
	case pair.Failures >= lim.PairFailures:
		// The limit is taken by attempts still being checked.
		return SignInAttempt{}, &SignInRefused{RetryAfter: lim.LockFor, Locked: true}
	case now.Before(acct.NextAt):
		return SignInAttempt{}, &SignInRefused{RetryAfter: acct.NextAt.Sub(now)}
	case now.Before(addr.NextAt):
		return SignInAttempt{}, &SignInRefused{RetryAfter: addr.NextAt.Sub(now)}
	}
	pair.Failures++
	acct.Failures++
	addr.Failures++
	acct.NextAt = now.Add(slowDown(acct.Failures, lim.AccountFree, lim.MaxDelay))
	addr.NextAt = now.Add(slowDown(addr.Failures, lim.AddressFree, lim.MaxDelay))
	for i := range cs {
		cs[i].LastAt = now
		if err := tx.PutSignInCounter(ctx, cs[i]); err != nil {
			return SignInAttempt{}, err
		}
	}
	if err := tx.Commit(); err != nil {
		return SignInAttempt{}, err
	}
	return SignInAttempt{Account: account, Remote: remote, lim: lim}, nil
}

// FailSignIn records a wrong password (or unknown name) in the audit log, and
// the lockout it starts, if any.
func (e *Engine) FailSignIn(ctx context.Context, actor Actor, a SignInAttempt) error {
	now := e.cfg.Now()
	tx, err := e.store.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rec := store.AuditRecord{At: now, Actor: actor.Name, Source: actor.Source, Remote: actor.Remote,
		Operation: "sign-in", Detail: store.SignInDetail(a.Account), Outcome: "failed: wrong username or password"}
	if err := tx.AppendAudit(ctx, rec); err != nil {
		return err
	}
	pair, err := tx.SignInCounter(ctx, a.Account, a.Remote)
	if err != nil {
		return err
	}
	if pair.Failures >= a.lim.PairFailures && pair.LockedUntil.IsZero() {
		pair.LockedUntil = now.Add(a.lim.LockFor)
		if err := tx.PutSignInCounter(ctx, pair); err != nil {
			return err
		}
		rec.Operation, rec.Outcome = "sign-in lockout", "ok"
		rec.Detail = fmt.Sprintf("account %s locked for %s from %s after %d failed sign-ins (lift it: smtpguard account unlock %s)",
			a.Account, a.lim.LockFor, a.Remote, pair.Failures, a.Account)
		if err := tx.AppendAudit(ctx, rec); err != nil {
			return err
		}
		e.log.Warn("sign-in locked out after repeated failures", "user", a.Account, "remote", a.Remote, "for", a.lim.LockFor)
	}
	return tx.Commit()
}

// signInLookBack bounds how far back the failed sign-ins since the last
// successful one are counted.
const signInLookBack = 90 * 24 * time.Hour

// SignIn completes a successful attempt: it forgets the failures of the
// account from that address, un-counts the attempt, stores the new session
// and records the sign-in in the audit log, in one transaction. It returns
// the failed sign-ins to the account since its previous successful one, for
// the person signing in to see.
func (e *Engine) SignIn(ctx context.Context, actor Actor, a SignInAttempt, secret string, sess store.Session) (store.FailedSignIns, error) {
	tx, err := e.store.Begin(ctx)
	if err != nil {
		return store.FailedSignIns{}, err
	}
	defer tx.Rollback()
	failed, err := tx.FailedSignInsSince(ctx, a.Account, sess.CreatedAt.Add(-signInLookBack))
	if err != nil {
		return store.FailedSignIns{}, err
	}
	if err := tx.DeleteSignInCounter(ctx, a.Account, a.Remote); err != nil {
		return store.FailedSignIns{}, err
	}
	if err := uncount(ctx, tx, a); err != nil {
		return store.FailedSignIns{}, err
	}
	if err := tx.CreateSession(ctx, secret, sess); err != nil {
		return store.FailedSignIns{}, err
	}
	rec := store.AuditRecord{At: sess.CreatedAt, Actor: actor.Name, Source: actor.Source, Remote: actor.Remote,
		Operation: "sign-in", Detail: store.SignInDetail(a.Account), Outcome: "ok"}
	if err := tx.AppendAudit(ctx, rec); err != nil {
		return store.FailedSignIns{}, err
	}
	return failed, tx.Commit()
}

// AbandonSignIn un-counts an attempt whose password was never checked (the
// client went away).
func (e *Engine) AbandonSignIn(ctx context.Context, a SignInAttempt) error {
	tx, err := e.store.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	pair, err := tx.SignInCounter(ctx, a.Account, a.Remote)
	if err != nil {
		return err
	}
	if pair.Failures > 0 && pair.LockedUntil.IsZero() {
		pair.Failures--
		if err := tx.PutSignInCounter(ctx, pair); err != nil {
			return err
		}
	}
	if err := uncount(ctx, tx, a); err != nil {
		return err
	}
	return tx.Commit()
}

// uncount takes one attempt off the account's and the address's counters;
// the wait they started stays: it only delays.
func uncount(ctx context.Context, tx *store.Tx, a SignInAttempt) error {
	for _, key := range [][2]string{{a.Account, ""}, {"", a.Remote}} {
		c, err := tx.SignInCounter(ctx, key[0], key[1])
		if err != nil {
			return err
		}
		if c.Failures == 0 {
			continue
		}
		c.Failures--
		if err := tx.PutSignInCounter(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// UnlockAccount lifts every sign-in lockout and slow-down of an account. An
// account with none is left alone and nothing is recorded.
func (e *Engine) UnlockAccount(ctx context.Context, actor Actor, name string) (Result, error) {
	if err := store.CheckName("account", name); err != nil {
		return Result{}, invalid(err)
	}
	var lifted []store.SignInCounter
	return e.accountChange(ctx, actor, "account unlock", name, func(tx *store.Tx) (string, bool, error) {
		var err error
		if lifted, err = tx.ClearSignInLocks(ctx, name, e.cfg.Now()); err != nil {
			return "", false, err
		}
		if len(lifted) == 0 {
			return fmt.Sprintf("account %s has no sign-in lockout; nothing changed", name), false, nil
		}
		return fmt.Sprintf("sign-in lockout of account %s lifted", name), true, nil
	})
}
