package engine

import (
	"context"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
)

// hookedBackend runs a function once, at the first Remove, before removing.
type hookedBackend struct {
	*fake.Backend
	beforeRemove func()
}

func (h *hookedBackend) Remove(ctx context.Context) error {
	if f := h.beforeRemove; f != nil {
		h.beforeRemove = nil
		f()
	}
	return h.Backend.Remove(ctx)
}

// TestDisableRemovesLeftoversUnderTheLock: an enable from another process
// that comes while a disable of a disabled policy removes leftover rules must
// not be wiped from the kernel after it committed.
func TestDisableRemovesLeftoversUnderTheLock(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	hooked := &hookedBackend{Backend: f.backend}
	cfg := f.cfg
	cfg.Backends = []enforce.Backend{hooked}
	disabler, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disabler.Close() })
	enabler, err := Open(ctx, cfg) // another process: the web UI, a second CLI
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enabler.Close() })

	enabled := make(chan error, 1)
	hooked.beforeRemove = func() {
		// Is the state lock free while leftovers are removed? Then an enable
		// can run to completion right here, as it could in production.
		lock, err := unix.Open(filepath.Join(f.stateDir, "lock"), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("open lock: %v", err)
			enabled <- nil
			return
		}
		defer unix.Close(lock)
		if unix.Flock(lock, unix.LOCK_EX|unix.LOCK_NB) == nil {
			unix.Flock(lock, unix.LOCK_UN)
			_, err := enabler.Enable(ctx, Actor{Name: "web:admin", Source: "web"}, "fake")
			enabled <- err
			return
		}
		// Held, as it must be: the enable waits for the disable to finish.
		go func() {
			_, err := enabler.Enable(ctx, Actor{Name: "web:admin", Source: "web"}, "fake")
			enabled <- err
		}()
	}
	if _, err := disabler.Disable(ctx, admin); err != nil {
		t.Fatalf("Disable() = %v", err)
	}
	if err := <-enabled; err != nil {
		t.Fatalf("concurrent Enable() = %v", err)
	}
	p, _ := f.stored(t)
	if p.Enabled && f.backend.Installed() == nil {
		t.Error("the store says enabled but the kernel holds no rules: the disable wiped the concurrent enable")
	}
	if !p.Enabled {
		t.Error("the concurrent enable did not take effect")
	}
}
