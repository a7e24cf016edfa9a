//go:build linux

package install

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/cli"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// packageFiles is what both packages install, apart from the per-format
// paths given to it.
func packageFiles(extra ...string) []string {
	list := []string{
		"/usr/sbin/smtpguard",
		"/usr/share/bash-completion/completions/smtpguard",
		"/usr/share/fish/vendor_completions.d/smtpguard.fish",
	}
	for _, page := range manPages(cli.NewDocsCommand()) {
		list = append(list, "/usr/share/man/man8/"+page+".gz")
	}
	list = append(list, extra...)
	sort.Strings(list)
	return list
}

// TestPrivilegedPackage builds the .deb and .rpm with `make package` (nfpm)
// and checks what an administrator gets: the files and their paths, the
// control fields, the maintainer scripts, a binary that runs and knows its
// version, and lintian's verdict. Nothing is installed on this host.
func TestPrivilegedPackage(t *testing.T) {
	testutil.Privileged(t)
	for _, tool := range []string{"dpkg-deb", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to build and inspect the .deb: %v", tool, err)
		}
	}
	tmp := t.TempDir()
	dist := filepath.Join(tmp, "dist")
	run(t, 15*time.Minute, "make", makeArgs(t, "package", "PKG_ROOT="+filepath.Join(tmp, "stage"), "DIST="+dist)...)
	debs, _ := filepath.Glob(filepath.Join(dist, "smtpguard_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dist, "smtpguard-*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make package wrote .deb %v and .rpm %v, want one of each", debs, rpms)
	}
	deb, rpm := debs[0], rpms[0]

	t.Run("deb files", func(t *testing.T) {
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(run(t, time.Minute, "dpkg-deb", "-c", deb)), "\n") {
			f := strings.Fields(line)
			if len(f) < 6 || !strings.HasPrefix(f[0], "-") {
				continue // directories
			}
			if want := "root/root"; f[1] != want {
				t.Errorf("%s is owned by %s, want %s", f[5], f[1], want)
			}
			got = append(got, strings.TrimPrefix(f[5], "."))
		}
		sort.Strings(got)
		want := packageFiles(
			"/lib/systemd/system/smtpguard.service",
			"/usr/share/zsh/vendor-completions/_smtpguard",
			"/usr/share/doc/smtpguard/copyright",
			"/usr/share/doc/smtpguard/changelog.Debian.gz",
			"/usr/share/lintian/overrides/smtpguard",
		)
		sort.Strings(want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("dpkg-deb -c (-want +got):\n%s", diff)
		}
	})

	t.Run("deb control", func(t *testing.T) {
		field := func(name string) string {
			return strings.TrimSpace(run(t, time.Minute, "dpkg-deb", "-f", deb, name))
		}
		for name, want := range map[string]string{"Package": "smtpguard", "Section": "net", "Priority": "optional",
			"Homepage": "https://github.com/smtpguard/smtpguard"} {
			if got := field(name); got != want {
				t.Errorf("dpkg-deb -f %s = %q, want %q", name, got, want)
			}
		}
		if v := field("Version"); !strings.HasSuffix(v, "-1") || v[0] < '0' || v[0] > '9' {
			t.Errorf("Version %q: want a dpkg version made from git describe, ending in -1", v)
		}
		if m := field("Maintainer"); !strings.Contains(m, "<") {
			t.Errorf("Maintainer %q has no address", m)
		}
		control := filepath.Join(t.TempDir(), "control")
		run(t, time.Minute, "dpkg-deb", "-e", deb, control)
		for _, script := range []string{"postinst", "prerm", "postrm"} {
			got, err := os.ReadFile(filepath.Join(control, script))
			if err != nil {
				t.Fatalf("the .deb has no %s: %v", script, err)
			}
			want, err := os.ReadFile(filepath.Join(repoRoot, "packaging/deb", script))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("the .deb's %s is not packaging/deb/%s (what TestPrivilegedMaintainerScripts runs)", script, script)
			}
			if info, err := os.Stat(filepath.Join(control, script)); err != nil || info.Mode().Perm()&0o111 == 0 {
				t.Errorf("the .deb's %s is not executable", script)
			}
		}
	})

	t.Run("deb binary runs and knows its version", func(t *testing.T) {
		root := t.TempDir()
		run(t, time.Minute, "dpkg-deb", "-x", deb, root)
		checkVersion(t, filepath.Join(root, "usr/sbin/smtpguard"))
		unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/smtpguard.service"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(unit), "\nExecStart=/usr/sbin/smtpguard ") {
			t.Errorf("the packaged unit does not run /usr/sbin/smtpguard:\n%s", unit)
		}
	})

	t.Run("rpm files", func(t *testing.T) {
		if _, err := exec.LookPath("rpm"); err != nil {
			t.Skip("rpm is not installed, so the .rpm's file list cannot be read here (apt-get install rpm)")
		}
		got := strings.Split(strings.TrimSpace(run(t, time.Minute, "rpm", "-qpl", rpm)), "\n")
		sort.Strings(got)
		want := packageFiles(
			"/usr/lib/systemd/system/smtpguard.service",
			"/usr/share/zsh/site-functions/_smtpguard",
			"/usr/share/licenses/smtpguard/LICENSE",
		)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("rpm -qpl (-want +got):\n%s", diff)
		}
		scripts := run(t, time.Minute, "rpm", "-qp", "--scripts", rpm)
		for _, script := range []string{"postinst", "preun", "postun"} {
			want, err := os.ReadFile(filepath.Join(repoRoot, "packaging/rpm", script))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(scripts, strings.TrimSpace(string(want))) {
				t.Errorf("the .rpm's scriptlets do not include packaging/rpm/%s:\n%s", script, scripts)
			}
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		// Same commit, same bytes: a second build elsewhere matches.
		tmp2 := t.TempDir()
		dist2 := filepath.Join(tmp2, "dist")
		run(t, 15*time.Minute, "make", makeArgs(t, "package", "PKG_ROOT="+filepath.Join(tmp2, "stage"), "DIST="+dist2)...)
		for _, p := range []string{deb, rpm} {
			a, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dist2, filepath.Base(p)))
			if err != nil {
				t.Fatalf("the second build has no %s: %v", filepath.Base(p), err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s differs between two builds of one commit", filepath.Base(p))
			}
		}
	})

	t.Run("dpkg in a throwaway root", func(t *testing.T) {
		if _, err := exec.LookPath("mmdebstrap"); err != nil {
			t.Skip("mmdebstrap is not installed, so there is no Debian root to install into; `make package-check` installs it and runs this check")
		}
		// Install, reinstall, remove and purge with the real dpkg in a
		// chroot (and the .rpm with rpm --root, when rpm is installed): the
		// Debian root is built once and cached.
		out := run(t, 10*time.Minute, "packaging/chroot-check", deb, rpm)
		if !strings.Contains(out, "chroot-check: ok") {
			t.Errorf("packaging/chroot-check did not finish the .deb:\n%s", out)
		}
		if _, err := exec.LookPath("rpm"); err == nil && !strings.Contains(out, "chroot-check: rpm: ok") {
			t.Errorf("packaging/chroot-check did not finish the .rpm:\n%s", out)
		}
	})

	t.Run("lintian", func(t *testing.T) {
		if _, err := exec.LookPath("lintian"); err != nil {
			t.Skip("lintian is not installed; `make package-check` installs it and runs this check")
		}
		// Errors and warnings fail; packaging/lintian-overrides holds the
		// reasoned exceptions.
		out := run(t, 5*time.Minute, "lintian", "--fail-on", "error,warning", deb)
		t.Logf("lintian:\n%s", out)
	})
}
