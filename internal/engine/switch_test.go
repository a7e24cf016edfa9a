package engine

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/mta"
)

// newSwitchFixture is a fixture with two backends, "one" (preferred) and
// "two", enabled with "one".
func newSwitchFixture(t *testing.T) (f *fixture, one, two *fake.Backend) {
	t.Helper()
	base := newFixture(t)
	one, two = fake.New("one"), fake.New("two")
	cfg := base.cfg
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.MTA = mta.Config{Root: t.TempDir()}
	cfg.Backends = []enforce.Backend{one, two}
	eng, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { eng.Close() })
	f = &fixture{eng: eng, backend: one, stateDir: cfg.StateDir, cfg: cfg}
	must(t)(eng.Allow(context.Background(), admin, "user", "alice"))
	must(t)(eng.Enable(context.Background(), admin, "one"))
	if one.Installed() == nil {
		t.Fatal("enable --backend one installed nothing in backend one")
	}
	return f, one, two
}

func TestSwitchBackendAppliesNewRemovesOld(t *testing.T) {
	ctx := context.Background()
	f, one, two := newSwitchFixture(t)
	want := *one.Installed()
	must(t)(f.eng.Enable(ctx, admin, "two"))
	if got := two.Installed(); got == nil || !got.Equal(want) {
		t.Errorf("backend two after switching enforces %+v, want %+v", got, want)
	}
	if got := one.Installed(); got != nil {
		t.Errorf("backend one after switching to two still enforces %+v, want it removed", got)
	}
	if p, _ := f.stored(t); p.Backend != "two" {
		t.Errorf("stored backend = %q, want two", p.Backend)
	}
}

func TestSwitchBackendFailureKeepsOld(t *testing.T) {
	tests := []struct {
		name     string
		sabotage func(one, two *fake.Backend)
		want     string
	}{
		{"apply of the new backend fails", func(_, two *fake.Backend) { two.FailApply(errors.New("two: kernel says no")) }, "two: kernel says no"},
		{"removal of the old backend fails", func(one, _ *fake.Backend) { one.FailRemove(errors.New("one: device busy")) }, "one: device busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f, one, two := newSwitchFixture(t)
			want := *one.Installed()
			tt.sabotage(one, two)
			_, err := f.eng.Enable(ctx, admin, "two")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Enable(two) = %v, want an error containing %q", err, tt.want)
			}
			if got := one.Installed(); got == nil || !got.Equal(want) {
				t.Errorf("backend one after the failed switch enforces %+v, want %+v restored", got, want)
			}
			if got := two.Installed(); got != nil {
				t.Errorf("backend two after the failed switch enforces %+v, want nothing: two backends must not both enforce", got)
			}
			if p, _ := f.stored(t); !p.Enabled || p.Backend != "one" {
				t.Errorf("stored policy enabled=%t backend=%q after the failed switch, want enabled with one", p.Enabled, p.Backend)
			}
		})
	}
}
