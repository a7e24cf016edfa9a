//go:build linux

package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// unitCapabilities is the CapabilityBoundingSet of the unit install-service
// writes, as setpriv names them ("net_admin").
func unitCapabilities(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command(binary, "--state-dir", "/var/lib/smtpguard", "install-service", "--print", "--exec", "/usr/sbin/smtpguard").Output()
	if err != nil {
		t.Fatalf("install-service --print: %v", err)
	}
	for line := range strings.Lines(string(out)) {
		if after, ok := strings.CutPrefix(strings.TrimSpace(line), "CapabilityBoundingSet="); ok {
			var caps []string
			for _, c := range strings.Fields(after) {
				caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
			return caps
		}
	}
	t.Fatalf("the unit has no CapabilityBoundingSet:\n%s", out)
	return nil
}

// TestPrivilegedUnitCapabilitiesSufficeForBPF: root limited to the unit's
// capability bounding set (as systemd runs the daemon) can enable, verify
// and disable the bpf backend, and each capability added for bpf is needed:
// without it enable fails. This is how they were measured.
func TestPrivilegedUnitCapabilitiesSufficeForBPF(t *testing.T) {
	w := newWorldFor(t, "bpf")
	caps := unitCapabilities(t)
	for _, need := range []string{"bpf", "perfmon", "net_admin"} {
		if !slices.Contains(caps, need) {
			t.Errorf("the unit's CapabilityBoundingSet %v lacks CAP_%s", caps, strings.ToUpper(need))
		}
	}
	limited := func(set []string, args ...string) cmdResult {
		t.Helper()
		bounding := "-all"
		for _, c := range set {
			bounding += ",+" + c
		}
		if _, err := exec.LookPath("setpriv"); err != nil {
			t.Skip("setpriv not installed (util-linux)")
		}
		// nsenter (which needs CAP_SYS_ADMIN) first, then the limits.
		cmd := w.command(args...)
		i := slices.Index(cmd.Args, "--")
		cmd.Args = slices.Concat(cmd.Args[:i+1], []string{"setpriv", "--bounding-set=" + bounding, "--inh-caps=-all", "--"}, cmd.Args[i+1:])
		return run(t, cmd)
	}
	for _, drop := range []string{"bpf", "perfmon", "net_admin"} {
		without := slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == drop })
		if r := limited(without, "enable", "--backend", "bpf", "--cgroup", w.cg.Path); r.code == 0 {
			t.Errorf("enable --backend bpf succeeded without CAP_%s; the unit need not grant it (or the test is wrong)", strings.ToUpper(drop))
			w.sgOK("disable")
		} else {
			t.Logf("without CAP_%s: %s", strings.ToUpper(drop), strings.TrimSpace(r.stderr))
		}
	}
	if r := limited(caps, "enable", "--backend", "bpf", "--cgroup", w.cg.Path); r.code != 0 {
		t.Fatalf("enable --backend bpf with the unit's capabilities: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { w.sg("disable") })
	if r := limited(caps, "status"); r.code != 0 || !strings.Contains(r.stdout, "in sync") {
		t.Errorf("status with the unit's capabilities: exit %d, want the bpf rules in sync:\n%s%s", r.code, r.stdout, r.stderr)
	}
	w.expectBlocked(&w.plain, remote(25)...)
	if r := limited(caps, "disable"); r.code != 0 {
		t.Fatalf("disable with the unit's capabilities: exit %d: %s", r.code, r.stderr)
	}
	w.expectNothingLeft("after disable with the unit's capabilities")
}
