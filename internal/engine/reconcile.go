package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Reconciled describes one reconcile pass.
type Reconciled struct {
	Enabled  bool
	Backend  string
	Revision int64          // stored policy revision the pass enforced
	Ruleset  policy.Ruleset // what the kernel must hold (when enabled)
	Drift    []string       // what differed before the pass; empty when in sync
	Applied  bool           // the kernel was changed
	Took     time.Duration  // time spent applying
}

// Reconcile makes the kernel match the stored policy, for the daemon. It holds
// the state lock, so it never races a CLI or web change half-way: it sees
// either the policy before a change (and the kernel as it was) or after it.
// removeWhenDisabled also deletes leftover rules of a disabled policy.
func (e *Engine) Reconcile(ctx context.Context, removeWhenDisabled bool) (Reconciled, error) {
	unlock, err := lockFile(ctx, filepath.Join(e.cfg.StateDir, "lock"))
	if err != nil {
		return Reconciled{}, err
	}
	defer unlock()
	return e.reconcile(ctx, removeWhenDisabled)
}

// ErrBusy is returned by TryReconcile while another change holds the state
// lock.
var ErrBusy = errors.New("another smtpguard change holds the state lock")

// TryReconcile is Reconcile without waiting: while a change holds the state
// lock it returns ErrBusy at once, so the daemon can repair the kernel from
// what it last enforced instead of waiting seconds for a large change.
func (e *Engine) TryReconcile(ctx context.Context, removeWhenDisabled bool) (Reconciled, error) {
	unlock, err := tryLockFile(filepath.Join(e.cfg.StateDir, "lock"))
	if err != nil {
		return Reconciled{}, err
	}
	defer unlock()
	return e.reconcile(ctx, removeWhenDisabled)
}

func (e *Engine) reconcile(ctx context.Context, removeWhenDisabled bool) (Reconciled, error) {
	p, meta, err := e.store.Policy(ctx)
	if err != nil {
		return Reconciled{}, err
	}
	r := Reconciled{Enabled: p.Enabled, Backend: p.Backend, Revision: meta.Revision}
	if !p.Enabled {
		if err := e.missingPolicy(ctx, meta); err != nil {
			return r, err // never converge a lost database to "disabled"
		}
		if removeWhenDisabled {
			return r, e.remove(ctx, p.Backend)
		}
		return r, nil
	}
	v, err := e.currentView(ctx)
	if err != nil {
		return r, err
	}
	b, err := e.backend(p.Backend)
	if err != nil {
		return r, err
	}
	res, _ := e.resolve(ctx, p, v)
	r.Ruleset = compile(p, res, v)
	drift, err := b.Verify(ctx, r.Ruleset)
	if err != nil {
		return r, fmt.Errorf("verify %s rules: %w", b.Name(), err)
	}
	if drift.InSync() {
		return r, nil
	}
	r.Drift = drift.Problems
	start := time.Now()
	if err := b.Apply(ctx, r.Ruleset); err != nil {
		return r, fmt.Errorf("repair %s rules: %w", b.Name(), err)
	}
	e.endSessions(ctx, r.Ruleset) // connections opened while the rules were off
	r.Applied, r.Took = true, time.Since(start)
	return r, nil
}
