//go:build linux

package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// autoStatus is what status --json says of the backend choice.
type autoStatus struct {
	Enabled  bool   `json:"enabled"`
	Backend  string `json:"backend"`
	Cgroup   string `json:"cgroup"`
	Backends []struct {
		Name   string `json:"name"`
		Active bool   `json:"active"`
		Why    string `json:"why"`
		Chosen string `json:"chosen"`
	} `json:"backends"`
}

func (w *world) autoStatus(extraEnv ...string) autoStatus {
	w.t.Helper()
	cmd := w.command("status", "--json")
	cmd.Env = append(cmd.Env, extraEnv...)
	r := run(w.t, cmd)
	if r.code != 0 {
		w.t.Fatalf("status --json: exit %d: %s", r.code, r.stderr)
	}
	var st autoStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		w.t.Fatalf("status --json: %v: %s", err, r.stdout)
	}
	return st
}

// why is what status --json says of the backend named name.
func (st autoStatus) why(name string) (active bool, why, chosen string) {
	for _, b := range st.Backends {
		if b.Name == name {
			return b.Active, b.Why, b.Chosen
		}
	}
	return false, "", ""
}

// TestPrivilegedAutoPrefersBPF: enable with the default backend (auto) in
// a test cgroup chooses bpf where it works, enforces there, and status says
// so and why nft was not chosen.
func TestPrivilegedAutoPrefersBPF(t *testing.T) {
	w := newWorldFor(t, "bpf")
	smtp := remote(25)
	w.sgOK("enable", "--cgroup", w.cg.Path)
	t.Cleanup(func() { w.sg("disable") })
	st := w.autoStatus()
	if !st.Enabled || st.Backend != "bpf" || st.Cgroup != w.cg.Path {
		t.Errorf("status after enable --backend auto = enabled %v, backend %q, cgroup %q; want enabled with bpf on %s", st.Enabled, st.Backend, st.Cgroup, w.cg.Path)
	}
	if active, _, chosen := st.why("bpf"); !active || chosen != "auto: bpf probe passed" {
		t.Errorf("status --json backends: bpf active %v, chosen %q; want active, \"auto: bpf probe passed\"", active, chosen)
	}
	if active, why, _ := st.why("nft"); active || why != "not used: auto prefers bpf, which works here" {
		t.Errorf("status --json backends: nft active %v, why %q; want not used because auto prefers bpf", active, why)
	}
	if out := w.sgOK("status"); !strings.Contains(out, "auto prefers bpf, which works here") || !strings.Contains(out, "backend bpf on cgroup "+w.cg.Path) {
		t.Errorf("status does not say bpf was chosen on %s and why nft was not:\n%s", w.cg.Path, out)
	}
	w.expectBlocked(&w.plain, smtp...)
	w.expectReach(nil, smtp...)
	if table := w.kernelTable(); table != "" {
		t.Errorf("auto chose bpf but an nftables table exists:\n%s", table)
	}
	w.sgOK("disable")
	w.expectNothingLeft("after disable")
}

// TestPrivilegedAutoFallsBackToNFT: where bpf cannot work (here: its bpf
// file system path does not exist, so its probe fails) auto takes nft, and
// status says why bpf was not chosen.
func TestPrivilegedAutoFallsBackToNFT(t *testing.T) {
	w := newWorldFor(t, "bpf")
	noBPFFS := "SMTPGUARD_BPFFS=" + filepath.Join(t.TempDir(), "no-bpffs-here")
	sg := func(args ...string) cmdResult {
		t.Helper()
		cmd := w.command(args...)
		cmd.Env = append(cmd.Env, noBPFFS) // the last one counts
		return run(t, cmd)
	}
	if r := sg("enable", "--cgroup", w.cg.Path); r.code != 0 {
		t.Fatalf("enable --cgroup %s with bpf unusable: exit %d: %s", w.cg.Path, r.code, r.stderr)
	}
	t.Cleanup(func() { sg("disable") })
	st := w.autoStatus(noBPFFS)
	if !st.Enabled || st.Backend != "nft" || st.Cgroup != "" {
		t.Errorf("status after enable --backend auto without bpf = enabled %v, backend %q, cgroup %q; want enabled with nft, no cgroup", st.Enabled, st.Backend, st.Cgroup)
	}
	_, why, _ := st.why("bpf")
	if !strings.HasPrefix(why, "not used: auto could not use it: ") || !strings.Contains(why, "no-bpffs-here") {
		t.Errorf("status --json says of bpf %q; want that auto could not use it, naming the missing bpf file system", why)
	}
	if r := sg("status"); !strings.Contains(r.stdout, "Backend bpf:") || !strings.Contains(r.stdout, "auto could not use it") {
		t.Errorf("status does not say why bpf was not chosen:\n%s", r.stdout)
	}
	w.expectBlocked(&w.plain, remote(25)...)
	if w.kernelTable() == "" {
		t.Error("auto fell back to nft but no smtpguard table exists")
	}
	if r := sg("disable"); r.code != 0 {
		t.Fatalf("disable: exit %d: %s", r.code, r.stderr)
	}
	w.expectReach(&w.plain, remote(25)...)
}
