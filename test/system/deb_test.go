//go:build linux

package system

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// repoRoot is the checkout this test runs in.
const repoRoot = "../.."

// inRepo runs a command in the checkout, bounded in time, and returns its
// trimmed output.
func inRepo(t *testing.T, ctx context.Context, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// builtPackage is the .deb of `make package` and what it should report.
type builtPackage struct {
	path     string
	version  string // the package's Version field
	describe string // git describe, which the binary reports as its version
	commit   string
}

// makePackage builds the .deb exactly as an administrator does, with `make
// package` (the same nfpm, configuration and maintainer scripts), into a
// temporary directory, with the Go that runs this test.
func makePackage(t *testing.T, ctx context.Context) builtPackage {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go on PATH for make package: %v", err)
	}
	requireTool(t, "make", "make")
	requireTool(t, "dpkg-deb", "dpkg")
	tmp := t.TempDir()
	dist := filepath.Join(tmp, "dist")
	inRepo(t, ctx, 15*time.Minute, "make", "--no-print-directory", "GO="+goBin, "package",
		"PKG_ROOT="+filepath.Join(tmp, "stage"), "DIST="+dist)
	debs, _ := filepath.Glob(filepath.Join(dist, "smtpguard_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make package wrote %v, want one .deb", debs)
	}
	p := builtPackage{path: debs[0]}
	p.version = inRepo(t, ctx, time.Minute, "dpkg-deb", "-f", p.path, "Version")
	// What the Makefile stamps: git describe and the commit, and from them
	// (tools/pkgversion, with the commit's day) the package version.
	git := []string{"-c", "safe.directory=*"}
	p.describe = inRepo(t, ctx, time.Minute, "git", append(git, "describe", "--tags", "--always", "--dirty")...)
	p.commit = inRepo(t, ctx, time.Minute, "git", append(git, "rev-parse", "HEAD")...)
	epoch, err := strconv.ParseInt(inRepo(t, ctx, time.Minute, "git", append(git, "log", "-1", "--format=%ct")...), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Unix(epoch, 0).UTC().Format("20060102")
	if want := inRepo(t, ctx, 5*time.Minute, goBin, "run", "./tools/pkgversion", p.describe, day) + "-1"; p.version != want {
		t.Errorf("the .deb's Version is %q, want %q (git describe %q through tools/pkgversion)", p.version, want, p.describe)
	}
	if dep := inRepo(t, ctx, time.Minute, "dpkg-deb", "-f", p.path, "Depends", "Pre-Depends"); dep != "" {
		// The container's root has only what it was built with: a new
		// dependency must be added to basePackages, not fetched here.
		t.Logf("the .deb depends on: %s", dep)
	}
	return p
}

// exists reports whether path exists (or is a dangling link) inside the
// container, as its own processes see it.
func (c *container) exists(ctx context.Context, path string) bool {
	_, err := c.run(ctx, time.Minute, "sh", "-c", `test -e "$1" || test -L "$1"`, "sh", path)
	return err == nil
}
