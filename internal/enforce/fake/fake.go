// Package fake is an in-memory enforce.Backend for tests of the engine, the CLI
// and the daemon. It records every call and can be told to fail.
package fake

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// Backend keeps "kernel state" in memory.
type Backend struct {
	name string

	mu sync.Mutex // protects the following fields
	// installed is the ruleset the fake kernel enforces; nil when removed.
	installed *policy.Ruleset
	calls     []string
	applyErr  error
	removeErr error
	probeErr  error
	// watchers and sinks are the running Watch and Events streams, by id;
	// watchCalls counts every Watch call.
	watchers   map[int]func()
	sinks      map[int]func(enforce.Event)
	nextID     int
	watchCalls int
	desc       enforce.Description
	// gate, while set, makes Verify wait until it is closed: a kernel
	// call that hangs.
	gate chan struct{}
}

// New returns a fake backend that reports the given name.
func New(name string) *Backend {
	return &Backend{name: name, watchers: map[int]func(){}, sinks: map[int]func(enforce.Event){}, desc: enforce.Description{
		Covers:              "an in-memory fake kernel",
		Limitations:         []string{"fake " + name + " enforces nothing in the kernel"},
		Refusal:             "refused by the fake " + name,
		ChangeNotifications: true,
	}}
}

// Describe is part of enforce.Backend: what New or SetDescription gave.
func (b *Backend) Describe() enforce.Description {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.desc
	d.Limitations = slices.Clone(d.Limitations)
	return d
}

// SetDescription makes Describe return d from now on. Without change
// notifications, Watch returns ErrNotSupported at once, as such a backend's
// must.
func (b *Backend) SetDescription(d enforce.Description) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.desc = d
}

// Name is part of enforce.Backend.
func (b *Backend) Name() string { return b.name }

func (b *Backend) record(call string) {
	b.calls = append(b.calls, call)
}

// Probe is part of enforce.Backend.
func (b *Backend) Probe(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("probe")
	return b.probeErr
}

// Apply is part of enforce.Backend.
func (b *Backend) Apply(ctx context.Context, rs policy.Ruleset) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("apply")
	if b.applyErr != nil {
		return b.applyErr
	}
	cp := rs
	cp.Ports, cp.UIDs, cp.Exceptions = slices.Clone(rs.Ports), slices.Clone(rs.UIDs), slices.Clone(rs.Exceptions)
	cp.RateLimits = slices.Clone(rs.RateLimits)
	b.installed = &cp
	return nil
}

// Remove is part of enforce.Backend.
func (b *Backend) Remove(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("remove")
	if b.removeErr != nil {
		return b.removeErr
	}
	b.installed = nil
	return nil
}

// Present is part of enforce.Backend: whether a ruleset is installed.
func (b *Backend) Present(ctx context.Context) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("present")
	return b.installed != nil, nil
}

// Verify is part of enforce.Backend.
func (b *Backend) Verify(ctx context.Context, rs policy.Ruleset) (enforce.Drift, error) {
	b.mu.Lock()
	if gate := b.gate; gate != nil {
		b.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return enforce.Drift{}, ctx.Err()
		}
		b.mu.Lock()
	}
	defer b.mu.Unlock()
	b.record("verify")
	if b.installed == nil {
		return enforce.Drift{Problems: []string{"nothing installed"}}, nil
	}
	var d enforce.Drift
	in := *b.installed
	if in.Mode != rs.Mode || in.AllowLocal != rs.AllowLocal {
		d.Problems = append(d.Problems, "rules differ")
	}
	if !slices.Equal(in.Ports, rs.Ports) {
		d.Problems = append(d.Problems, fmt.Sprintf("ports %v, want %v", in.Ports, rs.Ports))
	}
	if !slices.Equal(in.UIDs, rs.UIDs) {
		d.Problems = append(d.Problems, fmt.Sprintf("uids %v, want %v", in.UIDs, rs.UIDs))
	}
	if !slices.Equal(in.Exceptions, rs.Exceptions) {
		d.Problems = append(d.Problems, fmt.Sprintf("exceptions %v, want %v", in.Exceptions, rs.Exceptions))
	}
	if !slices.Equal(in.RateLimits, rs.RateLimits) {
		d.Problems = append(d.Problems, fmt.Sprintf("rate limits %v, want %v", in.RateLimits, rs.RateLimits))
	}
	return d, nil
}

// Render is part of enforce.Backend.
func (b *Backend) Render(rs policy.Ruleset) string {
	return fmt.Sprintf("fake %s: mode=%s ports=%v allow_local=%t uids=%v\n", b.name, rs.Mode, rs.Ports, rs.AllowLocal, rs.UIDs)
}

// Watch is part of enforce.Backend: changed is called by Tamper.
func (b *Backend) Watch(ctx context.Context, changed func()) error {
	b.mu.Lock()
	b.watchCalls++
	if !b.desc.ChangeNotifications {
		b.mu.Unlock()
		return fmt.Errorf("watch fake %s: %w", b.name, enforce.ErrNotSupported)
	}
	id := b.nextID
	b.nextID++
	b.watchers[id] = changed
	b.mu.Unlock()
	<-ctx.Done()
	b.mu.Lock()
	delete(b.watchers, id)
	b.mu.Unlock()
	return nil
}

// Events is part of enforce.Backend: sink receives what Emit sends.
func (b *Backend) Events(ctx context.Context, sink func(enforce.Event)) error {
	b.mu.Lock()
	id := b.nextID
	b.nextID++
	b.sinks[id] = sink
	b.mu.Unlock()
	<-ctx.Done()
	b.mu.Lock()
	delete(b.sinks, id)
	b.mu.Unlock()
	return nil
}

// Attached reports whether both a Watch and an Events stream are running
// (only an Events stream, for a backend without change notifications).
func (b *Backend) Attached() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return (len(b.watchers) > 0 || !b.desc.ChangeNotifications) && len(b.sinks) > 0
}

// Streams counts the Watch and Events streams running now, and every Watch
// call so far.
func (b *Backend) Streams() (watching, events, watchCalls int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.watchers), len(b.sinks), b.watchCalls
}

// Emit delivers an event to every Events sink, as the kernel would.
func (b *Backend) Emit(ev enforce.Event) {
	b.mu.Lock()
	sinks := slices.Collect(maps.Values(b.sinks))
	b.mu.Unlock()
	for _, s := range sinks {
		s(ev)
	}
}

// Tamper replaces the installed ruleset behind smtpguard's back (nil: flush)
// and notifies watchers, as an external "nft flush ruleset" would.
func (b *Backend) Tamper(rs *policy.Ruleset) {
	b.mu.Lock()
	b.installed = rs
	watchers := slices.Collect(maps.Values(b.watchers))
	b.mu.Unlock()
	for _, w := range watchers {
		w()
	}
}

// Installed returns the ruleset the fake kernel enforces, or nil.
func (b *Backend) Installed() *policy.Ruleset {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.installed == nil {
		return nil
	}
	cp := *b.installed
	return &cp
}

// Calls returns the recorded call names in order.
func (b *Backend) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// Hang makes every later Verify wait, as a hung kernel call would, until
// the returned release is called.
func (b *Backend) Hang() (release func()) {
	gate := make(chan struct{})
	b.mu.Lock()
	b.gate = gate
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.gate = nil
			b.mu.Unlock()
			close(gate)
		})
	}
}

// FailApply makes every later Apply return err (nil to stop failing).
func (b *Backend) FailApply(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.applyErr = err
}

// FailRemove makes every later Remove return err.
func (b *Backend) FailRemove(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeErr = err
}

// FailProbe makes every later Probe return err.
func (b *Backend) FailProbe(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probeErr = err
}
