package engine

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEnableInStoresCgroup: the cgroup given at enable is kept with the
// policy, reaches the backend in every ruleset (so a daemon restart attaches
// to the same one), shows in status, and is dropped for backends that do
// not attach to cgroups.
func TestEnableInStoresCgroup(t *testing.T) {
	tests := []struct {
		name     string
		cgroups  bool // the backend attaches to a cgroup
		cgroup   string
		want     string
		wantFail bool
	}{
		{name: "cgroup backend keeps it", cgroups: true, cgroup: "/sys/fs/cgroup/smtpguard-test", want: "/sys/fs/cgroup/smtpguard-test"},
		{name: "cgroup backend default", cgroups: true, cgroup: "", want: ""},
		{name: "nft-like backend drops it", cgroups: false, cgroup: "/sys/fs/cgroup/smtpguard-test", want: ""},
		{name: "relative path refused", cgroups: true, cgroup: "sys/fs/cgroup", wantFail: true},
		{name: "unclean path refused", cgroups: true, cgroup: "/sys/fs/cgroup/../x", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f, one, _ := newSwitchFixture(t)
			d := one.Describe()
			d.AttachesToCgroup = tt.cgroups
			one.SetDescription(d)
			_, err := f.eng.EnableIn(ctx, admin, "one", tt.cgroup)
			if tt.wantFail {
				if !IsValidation(err) {
					t.Fatalf("EnableIn(%q) = %v, want an invalid-input error", tt.cgroup, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("EnableIn(%q) = %v", tt.cgroup, err)
			}
			p, _ := f.stored(t)
			if diff := cmp.Diff(tt.want, p.Cgroup); diff != "" {
				t.Errorf("stored cgroup (-want +got):\n%s", diff)
			}
			if got := one.Installed(); got == nil || got.Cgroup != tt.want {
				t.Errorf("ruleset applied = %+v, want cgroup %q", got, tt.want)
			}
			st, err := f.eng.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Cgroup != tt.want {
				t.Errorf("status cgroup = %q, want %q", st.Cgroup, tt.want)
			}
			// A reconcile (what the daemon does at boot) keeps the cgroup.
			one.Tamper(nil)
			if _, err := f.eng.Reconcile(ctx, false); err != nil {
				t.Fatal(err)
			}
			if got := one.Installed(); got == nil || got.Cgroup != tt.want {
				t.Errorf("ruleset after reconcile = %+v, want cgroup %q", got, tt.want)
			}
		})
	}
}

// TestStatusSaysWhyOtherBackendsAreNot: status names the backend in use and
// why each other one is not, explicit-only ones included.
func TestStatusSaysWhyOtherBackendsAreNot(t *testing.T) {
	ctx := context.Background()
	f, _, two := newSwitchFixture(t)
	d := two.Describe()
	d.ExplicitOnly = true
	two.SetDescription(d)
	st, err := f.eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []BackendChoice{
		{Name: "one", Active: true, Why: "enabled with this backend (requested explicitly)", Chosen: "requested explicitly"},
		{Name: "two", Why: "auto does not choose it: use it with enable --backend two", Chosen: "the restriction was enabled with backend one"},
	}
	if diff := cmp.Diff(want, st.Backends); diff != "" {
		t.Errorf("status backends (-want +got):\n%s", diff)
	}
	d.ExplicitOnly = false
	two.SetDescription(d)
	must(t)(f.eng.Disable(ctx, admin))
	st, err = f.eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want = []BackendChoice{
		{Name: "one", Why: "not used: the restriction is disabled"},
		{Name: "two", Why: "not used: the restriction is disabled"},
	}
	if diff := cmp.Diff(want, st.Backends); diff != "" {
		t.Errorf("status backends after disable (-want +got):\n%s", diff)
	}
}
