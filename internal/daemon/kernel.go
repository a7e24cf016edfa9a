package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// Kernel is the daemon's hold on its backends. The engine (its reconcile
// passes), the CLI through the daemon's socket, and the repair that runs
// while a change holds the state lock all call the same backends; Kernel
// makes their Apply, Remove and Verify calls take turns and remembers what
// each backend last enforced, so that repair never undoes a change made
// through the socket.
type Kernel struct {
	backends []*heldBackend
}

// NewKernel wraps the daemon's backends. Give Backends() to the engine and
// the Kernel to the daemon's Config.
func NewKernel(backends []enforce.Backend) *Kernel {
	k := &Kernel{}
	for _, b := range backends {
		k.backends = append(k.backends, &heldBackend{Backend: b})
	}
	return k
}

// Backends are the wrapped backends, in the order given.
func (k *Kernel) Backends() []enforce.Backend {
	out := make([]enforce.Backend, len(k.backends))
	for i, b := range k.backends {
		out[i] = b
	}
	return out
}

// SetExplainPort makes explain-mode rulesets send connections to port, the
// one the daemon's responder listens on (Config.ExplainPort). Call it
// before the backends are used.
func (k *Kernel) SetExplainPort(port uint16) {
	for _, b := range k.backends {
		b.explainPort = port
	}
}

// withExplainPort is rs with the daemon's responder port.
func (h *heldBackend) withExplainPort(rs policy.Ruleset) policy.Ruleset {
	if h.explainPort != 0 && rs.Mode == policy.ModeExplain {
		rs.ExplainPort = h.explainPort
	}
	return rs
}

// Close releases what the backends hold open (the nft owner's netlink
// connection); the rules stay in the kernel. It is for the daemon's exit.
func (k *Kernel) Close() error {
	var errs []error
	for _, b := range k.backends {
		if c, ok := b.Backend.(interface{ Close() error }); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// heldBackend serialises the calls that read or change kernel state. Watch
// and Events (long-running streams), Name, Render and Probe pass through.
type heldBackend struct {
	enforce.Backend
	// explainPort, when set, is the daemon's explain responder port, put
	// into explain-mode rulesets (compiled with the default) before they
	// reach the kernel.
	explainPort uint16

	mu sync.Mutex // serialises Apply, Remove, Verify; protects last
	// last is what the kernel is known to hold: the last ruleset applied or
	// verified in sync; nil when removed or not known yet.
	last *policy.Ruleset
}

// Apply is part of enforce.Backend.
func (h *heldBackend) Apply(ctx context.Context, rs policy.Ruleset) error {
	rs = h.withExplainPort(rs)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.Backend.Apply(ctx, rs); err != nil {
		// The kernel still holds what it did before (Apply is atomic).
		return err
	}
	cp := rs.Clone()
	h.last = &cp
	return nil
}

// Remove is part of enforce.Backend.
func (h *heldBackend) Remove(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	err := h.Backend.Remove(ctx)
	// Even after a partial failure the rules are no longer a known state to
	// restore.
	h.last = nil
	return err
}

// Verify is part of enforce.Backend.
func (h *heldBackend) Verify(ctx context.Context, rs policy.Ruleset) (enforce.Drift, error) {
	rs = h.withExplainPort(rs)
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.Backend.Verify(ctx, rs)
	if err == nil && d.InSync() {
		cp := rs.Clone()
		h.last = &cp
	}
	return d, err
}

// Repaired is one backend's repair from its last known rules.
type Repaired struct {
	Backend string
	Ruleset policy.Ruleset
	Drift   []string
	Took    time.Duration
}

// RepairLast makes each backend enforce what it last enforced, when the
// kernel no longer holds it, without the state lock. It is for the time a
// change holds the lock: that change's own Apply comes through these same
// backends, so what they last enforced is the newest intent.
func (k *Kernel) RepairLast(ctx context.Context) ([]Repaired, error) {
	var out []Repaired
	for _, h := range k.backends {
		r, err := h.repairLast(ctx)
		if err != nil {
			return out, err
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

func (h *heldBackend) repairLast(ctx context.Context) (*Repaired, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last == nil {
		return nil, nil
	}
	rs := h.last.Clone()
	d, err := h.Backend.Verify(ctx, rs)
	if err != nil {
		return nil, fmt.Errorf("verify %s rules: %w", h.Name(), err)
	}
	if d.InSync() {
		return nil, nil
	}
	start := time.Now()
	if err := h.Backend.Apply(ctx, rs); err != nil {
		return nil, fmt.Errorf("repair %s rules: %w", h.Name(), err)
	}
	return &Repaired{Backend: h.Name(), Ruleset: rs, Drift: d.Problems, Took: time.Since(start)}, nil
}

// AllowedConnections passes enforce.AllowedCounter through (ErrNotSupported
// when the backend keeps no counts): a read that needs no turn.
func (h *heldBackend) AllowedConnections(ctx context.Context) (map[uint32]uint64, error) {
	if ac, ok := h.Backend.(enforce.AllowedCounter); ok {
		return ac.AllowedConnections(ctx)
	}
	return nil, enforce.ErrNotSupported
}
