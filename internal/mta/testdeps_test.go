//go:build linux

package mta

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestMakeTestInstallsNoMTA: make test must be safe on a live mail server.
// The packages its test-deps step installs (the Makefile's TEST_DEBS) name
// no MTA, and scripts/test-deps, which installs them, refuses one.
func TestMakeTestInstallsNoMTA(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TEST_DEBS\s*:?=(.*)$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("no TEST_DEBS in the Makefile")
	}
	for _, p := range strings.Fields(string(m[1])) {
		if mtaPackageName.MatchString(p) {
			t.Errorf("TEST_DEBS names %s: make test would install an MTA on the host", p)
		}
	}
	cmd := exec.Command("sh", "../../scripts/test-deps", "nftables", "iproute2")
	cmd.Env = append(os.Environ(), "SMTPGUARD_TEST_DEPS_CHECK_ONLY=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("scripts/test-deps nftables iproute2 = %v, %q; want it to accept them", err, out)
	}
	for _, p := range []string{"exim4-daemon-light", "postfix", "sendmail-bin"} {
		cmd := exec.Command("sh", "../../scripts/test-deps", "nftables", p)
		cmd.Env = append(os.Environ(), "SMTPGUARD_TEST_DEPS_CHECK_ONLY=1") // never apt-get, even if the check broke
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "refusing: "+p) {
			t.Errorf("scripts/test-deps nftables %s = %v, %q; want it to refuse %s", p, err, out, p)
		}
	}
}
