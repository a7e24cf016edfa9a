//go:build linux

package mta

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// TestPrivilegedPostfixLimits runs the real postconf and `postfix check` on a
// private copy of this host's Postfix configuration. Debian's postfix and
// exim4-daemon-light conflict, so on hosts set up for the Exim tests (CI)
// it skips; it runs where Postfix is the installed MTA.
func TestPrivilegedPostfixLimits(t *testing.T) {
	testutil.Privileged(t)
	postconf, err := lookBinary([]string{"postconf"}, "/usr/sbin")
	if err != nil {
		t.Skip("postfix is not installed (it conflicts with exim4-daemon-light, which the Exim tests need); this test runs where postfix is")
	}
	ctx := t.Context()
	out, err := exec.Command(postconf, "-h", "config_directory").Output()
	if err != nil {
		t.Fatalf("postconf -h config_directory: %v", err)
	}
	copyDir := filepath.Join(privateDir(t, "smtpguard-postfix-"), "postfix")
	if out, err := exec.Command("cp", "-a", strings.TrimSpace(string(out)), copyDir).CombinedOutput(); err != nil {
		t.Fatalf("copying the postfix configuration: %v\n%s", err, out)
	}
	var reloads int
	m, err := NewPostfix(ctx, Options{
		PostfixConfigDir: copyDir,
		Reload: func(context.Context) error {
			reloads++
			return nil
		},
	}, systemDirectory(t))
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{MaxConnections: 30, MaxPerHost: 10}
	if _, err := m.SetLimits(ctx, want); err != nil {
		t.Fatalf("SetLimits(%+v): %v", want, err)
	}
	info, err := m.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Limits != want || reloads != 1 {
		t.Errorf("Info().Limits = %+v after SetLimits(%+v), reloads %d", info.Limits, want, reloads)
	}
	again, err := m.SetLimits(ctx, want)
	if err != nil || again != want {
		t.Errorf("SetLimits again = %+v, %v; want before %+v", again, err, want)
	}
}
