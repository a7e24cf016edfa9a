package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// TestAutoChoiceIsStoredStableAndExplained: enable --backend auto takes the
// first candidate whose probe passes (bpf is first in this build), falls
// back past one that fails, stores the name it chose (not "auto") so that
// converges keep using it even when its probe would now fail, and status
// says why each other backend was not chosen.
func TestAutoChoiceIsStoredStableAndExplained(t *testing.T) {
	unsupported := fmt.Errorf("no cgroup2 mount: %w", enforce.ErrNotSupported)
	tests := []struct {
		name     string
		failOne  bool
		want     string
		wantWhys []BackendChoice
	}{
		{
			name: "first candidate works", want: "one",
			wantWhys: []BackendChoice{
				{Name: "one", Active: true, Why: "enabled with this backend (auto: one probe passed)", Chosen: "auto: one probe passed"},
				{Name: "two", Why: "not used: auto prefers one, which works here", Chosen: "auto prefers one, which works here"},
			},
		},
		{
			name: "first candidate fails its probe", failOne: true, want: "two",
			wantWhys: []BackendChoice{
				{Name: "one", Why: "not used: auto could not use it: no cgroup2 mount: not supported on this host", Chosen: "auto could not use it: no cgroup2 mount: not supported on this host"},
				{Name: "two", Active: true, Why: "enabled with this backend (auto: two probe passed)", Chosen: "auto: two probe passed"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f, one, two := newSwitchFixture(t)
			must(t)(f.eng.Disable(ctx, admin))
			if tt.failOne {
				one.FailProbe(unsupported)
			}
			must(t)(f.eng.Enable(ctx, admin, policy.BackendAuto))
			p, _ := f.stored(t)
			if p.Backend != tt.want {
				t.Fatalf("stored backend after enable --backend auto = %q, want %q", p.Backend, tt.want)
			}
			st, err := f.eng.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Backend != tt.want {
				t.Errorf("status backend = %q, want %q", st.Backend, tt.want)
			}
			if diff := cmp.Diff(tt.wantWhys, st.Backends); diff != "" {
				t.Errorf("status backends (-want +got):\n%s", diff)
			}
			// The chosen backend's probe failing later (a daemon restarted
			// where bpf no longer loads) does not move a converge to the
			// other one: it re-applies the stored choice.
			chosen, other := one, two
			if tt.want == "two" {
				chosen, other = two, one
			}
			chosen.FailProbe(unsupported)
			chosen.Tamper(nil)
			if _, err := f.eng.Reconcile(ctx, false); err != nil {
				t.Fatalf("Reconcile = %v", err)
			}
			if chosen.Installed() == nil {
				t.Errorf("after a converge, backend %s enforces nothing; want the stored choice re-applied", chosen.Name())
			}
			if tt.want == "one" && other.Installed() != nil {
				t.Errorf("a converge applied backend %s too; want only the stored choice", other.Name())
			}
			if p2, _ := f.stored(t); p2.Backend != tt.want {
				t.Errorf("stored backend after a converge = %q, want %q", p2.Backend, tt.want)
			}
		})
	}
}

// TestImportAutoProbesAndStoresTheFilesCgroup: importing an enabled policy
// file with backend auto chooses as enable does, records why, and keeps
// the cgroup the chosen cgroup backend attaches to.
func TestImportAutoProbesAndStoresTheFilesCgroup(t *testing.T) {
	ctx := context.Background()
	f, one, _ := newSwitchFixture(t)
	d := one.Describe()
	d.AttachesToCgroup = true
	one.SetDescription(d)
	file := filepath.Join(t.TempDir(), "p.toml")
	body := "version = 1\nenabled = true\nbackend = \"auto\"\ncgroup = \"/sys/fs/cgroup/sgt-cg-test\"\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	pf, err := policy.DecodeFile([]byte(body), policy.FormatTOML)
	if err != nil {
		t.Fatal(err)
	}
	must(t)(f.eng.Import(ctx, admin, pf, file))
	p, _ := f.stored(t)
	want := policy.Policy{Backend: "one", Cgroup: "/sys/fs/cgroup/sgt-cg-test", BackendWhy: map[string]string{
		"one": "auto: one probe passed", "two": "auto prefers one, which works here",
	}}
	got := policy.Policy{Backend: p.Backend, Cgroup: p.Cgroup, BackendWhy: p.BackendWhy}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored after import (-want +got):\n%s", diff)
	}
	if rs := one.Installed(); rs == nil || rs.Cgroup != want.Cgroup {
		t.Errorf("ruleset applied = %+v, want cgroup %s", rs, want.Cgroup)
	}
}
