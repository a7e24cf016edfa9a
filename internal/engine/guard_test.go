package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// reopen closes the fixture's engine, lets damage do its worst to the state
// directory, and opens it again with the same (fake) kernel.
func (f *fixture) reopen(t *testing.T, damage func(db string)) {
	t.Helper()
	if err := f.eng.Close(); err != nil {
		t.Fatal(err)
	}
	damage(filepath.Join(f.stateDir, store.FileName))
	eng, err := Open(context.Background(), f.cfg)
	if err != nil {
		t.Fatalf("Open() after damage = %v", err)
	}
	t.Cleanup(func() { eng.Close() })
	f.eng = eng
}

func removeDB(t *testing.T) func(string) {
	return func(db string) {
		for _, p := range []string{db, db + "-wal", db + "-shm"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
		}
	}
}

func truncateDB(t *testing.T) func(string) {
	return func(db string) {
		for _, p := range []string{db + "-wal", db + "-shm"} {
			os.Remove(p)
		}
		if err := os.Truncate(db, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// A database that was deleted or emptied opens as a new one with the
// default, disabled policy. That must never lift the restriction the kernel
// still enforces: only an explicit disable does.
func TestLostDatabaseKeepsTheRulesInTheKernel(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage func(*testing.T) func(string)
		how    string
	}{
		{"deleted", removeDB, "was missing"},
		{"emptied", truncateDB, "was empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			must(t)(f.eng.Enable(ctx, admin, "fake"))
			must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "alice"))
			want := f.backend.Installed()
			f.reopen(t, tt.damage(t))

			_, err := f.eng.Reconcile(ctx, true)
			if !errors.Is(err, ErrPolicyMissing) {
				t.Errorf("Reconcile(removeWhenDisabled) = %v, want ErrPolicyMissing", err)
			}
			if got := f.backend.Installed(); got == nil || !slices.Equal(got.UIDs, want.UIDs) {
				t.Fatalf("kernel after reconcile = %+v, want the rules as they were (%+v)", got, want)
			}
			if slices.Contains(f.backend.Calls(), "remove") {
				t.Errorf("kernel calls %v include remove", f.backend.Calls())
			}

			st, err := f.eng.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Kernel.State != KernelPolicyMissing || !strings.Contains(st.Kernel.Problems[0], tt.how) ||
				!strings.Contains(st.Kernel.Fix, "from a backup") || !strings.Contains(st.Kernel.Fix, "smtpguard disable") {
				t.Errorf("Status().Kernel = %+v, want %q saying the database %s, with the fix", st.Kernel, KernelPolicyMissing, tt.how)
			}
			if diff := cmp.Diff([]string{"fake"}, st.Kernel.Present); diff != "" {
				t.Errorf("Status().Kernel.Present (-want +got):\n%s", diff)
			}

			// A partial change would store a disabled policy over the
			// missing one, and the next daemon start would lift the rules.
			if _, err := f.eng.Allow(ctx, admin, policy.KindUser, "bob"); !errors.Is(err, ErrPolicyMissing) {
				t.Errorf("Allow() on a lost database = %v, want ErrPolicyMissing", err)
			}
			if _, meta := f.stored(t); meta.Revision != 0 {
				t.Errorf("stored revision after a refused allow = %d, want 0", meta.Revision)
			}

			must(t)(f.eng.Disable(ctx, admin))
			if f.backend.Installed() != nil {
				t.Error("disable left the rules in the kernel")
			}
			if st, _ := f.eng.Status(ctx); st.Kernel.State != "not enforcing" {
				t.Errorf("Status().Kernel.State after disable = %q, want not enforcing", st.Kernel.State)
			}
			// Lifting the lost database's rules on purpose is stored and
			// audited: the database now holds a policy, "disabled".
			if _, meta := f.stored(t); meta.Revision == 0 {
				t.Error("stored revision after disable on a lost database = 0, want the disable stored")
			}
			recs, err := f.eng.Audit(ctx, store.AuditFilter{})
			if err != nil || len(recs) == 0 || recs[0].Operation != "disable" || recs[0].Actor != admin.Name {
				t.Errorf("audit after disable on a lost database = %+v, %v; want a disable record by %s", recs, err, admin.Name)
			}
		})
	}
}

// A new state directory on a clean kernel is simply disabled.
func TestNewDatabaseWithoutRulesIsNotEnforcing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.eng.Reconcile(ctx, true); err != nil {
		t.Errorf("Reconcile() = %v", err)
	}
	must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "alice"))
	st, err := f.eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Kernel.State != "not enforcing" {
		t.Errorf("Status().Kernel = %+v, want not enforcing", st.Kernel)
	}
}

func TestStatusReportsLeftoversOfADisabledPolicy(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	must(t)(f.eng.Enable(ctx, admin, "fake"))
	must(t)(f.eng.Disable(ctx, admin))
	f.backend.Apply(ctx, policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25}}) // a crash between the two
	st, err := f.eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Kernel.State != KernelLeftovers || !strings.Contains(st.Kernel.Fix, "smtpguard disable") {
		t.Errorf("Status().Kernel = %+v, want %q with the fix", st.Kernel, KernelLeftovers)
	}
	must(t)(f.eng.Disable(ctx, admin))
	if st, _ := f.eng.Status(ctx); st.Kernel.State != "not enforcing" {
		t.Errorf("Status().Kernel.State after disable = %q, want not enforcing", st.Kernel.State)
	}
}

// A corrupt database is not a missing one: opening it fails and says how to
// recover, and nothing touched the kernel.
func TestCorruptDatabaseIsRefusedWithTheFix(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	must(t)(f.eng.Enable(ctx, admin, "fake"))
	f.eng.Close()
	db := filepath.Join(f.stateDir, store.FileName)
	os.Remove(db + "-wal")
	os.Remove(db + "-shm")
	if err := os.WriteFile(db, []byte(strings.Repeat("not a database ", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, f.cfg)
	if !errors.Is(err, ErrDatabaseUnreadable) {
		t.Errorf("Open() of a corrupt database = %v, want ErrDatabaseUnreadable", err)
	}
	if err == nil || !strings.Contains(err.Error(), "from a backup") || !strings.Contains(err.Error(), "smtpguard disable") {
		t.Errorf("Open() of a corrupt database = %v, want an error naming the fix", err)
	}
	if f.backend.Installed() == nil {
		t.Error("the rules left the kernel")
	}
}
