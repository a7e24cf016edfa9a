// Package install tests what an administrator installs: `make install` into
// a DESTDIR, `make uninstall`, the .deb and .rpm of `make package` (files,
// control fields, lintian), and the packages' maintainer scripts, run in a
// private mount namespace against fake systemd tools so that the host's
// services, /var/lib and /etc are never touched.
package install

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/cli"
)

// repoRoot is the checkout this test runs in.
const repoRoot = "../.."

// manPages is one page per command a user can run.
func manPages(cmd *cobra.Command) []string {
	pages := []string{strings.ReplaceAll(cmd.CommandPath(), " ", "-") + ".8"}
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() && !c.IsAdditionalHelpTopicCommand() {
			pages = append(pages, manPages(c)...)
		}
	}
	return pages
}

// run runs a command in the checkout, bounded in time, and returns its output.
func run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeArgs names this test's Go, so make builds with the toolchain that runs
// the tests.
func makeArgs(t *testing.T, args ...string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go on PATH for make: %v", err)
	}
	return append([]string{"--no-print-directory", "GO=" + goBin}, args...)
}

// gitDescribe is what the Makefile stamps into the binary ("devel" outside a
// git checkout).
func gitDescribe(t *testing.T) (version, commit string) {
	t.Helper()
	d, err1 := exec.Command("git", "-C", repoRoot, "describe", "--tags", "--always", "--dirty").Output()
	c, err2 := exec.Command("git", "-C", repoRoot, "rev-parse", "HEAD").Output()
	if err1 != nil || err2 != nil {
		return "devel", "unknown"
	}
	return strings.TrimSpace(string(d)), strings.TrimSpace(string(c))
}

// files lists the regular files under root, relative, with their modes.
func files(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	got := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		got[rel] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func checkVersion(t *testing.T, binary string) {
	t.Helper()
	out, err := exec.Command(binary, "version", "--json").Output()
	if err != nil {
		t.Fatalf("%s version --json: %v", binary, err)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s version --json: %v\n%s", binary, err, out)
	}
	version, commit := gitDescribe(t)
	if got["version"] != version || got["commit"] != commit {
		t.Errorf("%s version --json = %v, want version %q and commit %q from git (ldflags)", binary, got, version, commit)
	}
}

func TestMakeInstallAndUninstall(t *testing.T) {
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "root")
	vars := []string{"DESTDIR=" + dest, "BIN=" + filepath.Join(tmp, "smtpguard"), "GEN=" + filepath.Join(tmp, "gen")}
	run(t, 5*time.Minute, "make", makeArgs(t, append([]string{"install"}, vars...)...)...)

	want := map[string]fs.FileMode{
		"usr/local/sbin/smtpguard":                                 0o755,
		"usr/local/lib/systemd/system/smtpguard.service":           0o644,
		"usr/local/share/bash-completion/completions/smtpguard":    0o644,
		"usr/local/share/zsh/site-functions/_smtpguard":            0o644,
		"usr/local/share/fish/vendor_completions.d/smtpguard.fish": 0o644,
	}
	for _, page := range manPages(cli.NewDocsCommand()) {
		want["usr/local/share/man/man8/"+page] = 0o644
	}
	if diff := cmp.Diff(want, files(t, dest)); diff != "" {
		t.Errorf("make install DESTDIR=... installed (-want +got):\n%s", diff)
	}

	unit, err := os.ReadFile(filepath.Join(dest, "usr/local/lib/systemd/system/smtpguard.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nExecStart=/usr/local/sbin/smtpguard ") {
		t.Errorf("the installed unit does not run the installed binary /usr/local/sbin/smtpguard:\n%s", unit)
	}
	checkVersion(t, filepath.Join(dest, "usr/local/sbin/smtpguard"))

	run(t, 2*time.Minute, "make", makeArgs(t, append([]string{"uninstall"}, vars...)...)...)
	if left := files(t, dest); len(left) != 0 {
		t.Errorf("make uninstall left %v", left)
	}
}

func TestMakeInstallHonoursPrefix(t *testing.T) {
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "root")
	run(t, 5*time.Minute, "make", makeArgs(t, "install", "PREFIX=/opt/sg", "DESTDIR="+dest,
		"BIN="+filepath.Join(tmp, "smtpguard"), "GEN="+filepath.Join(tmp, "gen"))...)
	got := files(t, dest)
	var outside []string
	for f := range got {
		if !strings.HasPrefix(f, "opt/sg/") {
			outside = append(outside, f)
		}
	}
	sort.Strings(outside)
	if len(outside) != 0 {
		t.Errorf("make install PREFIX=/opt/sg wrote outside the prefix: %v", outside)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "opt/sg/lib/systemd/system/smtpguard.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nExecStart=/opt/sg/sbin/smtpguard ") {
		t.Errorf("unit under PREFIX=/opt/sg does not run /opt/sg/sbin/smtpguard:\n%s", unit)
	}
}
