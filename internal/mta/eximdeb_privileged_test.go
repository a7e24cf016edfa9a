//go:build linux

package mta

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// eximDebCache is where Debian's Exim packages are kept unpacked between
// runs, under os.TempDir().
const eximDebCache = "smtpguard-exim-deb"

// eximDebs are the packages the Exim tests run: the daemon's binary and the
// Debian configuration with update-exim4.conf. Installing them would
// replace a host's MTA (exim4-daemon-light conflicts with every other
// mail-transport-agent), so they are only unpacked.
var eximDebs = []string{"exim4-daemon-light", "exim4-config"}

// eximUser is the account Debian's Exim is built to run as (EXIM_USER
// ref:Debian-exim, looked up before the configuration is read).
const eximUser = "Debian-exim"

// privateExim is Debian's Exim unpacked in a private directory, with any
// shared library it needs that the host lacks unpacked beside it.
type privateExim struct {
	root       string   // where the packages are unpacked
	bin        string   // usr/sbin/exim4
	updateConf string   // usr/sbin/update-exim4.conf
	confDir    string   // etc/exim4 as exim4-config ships it
	env        []string // LD_LIBRARY_PATH for the private libraries
	// libMounts overlay the private libraries onto the system library
	// directories, for a daemon's private mount namespace: on SIGHUP the
	// daemon re-executes the setuid binary with a real uid of Debian-exim,
	// so the dynamic loader runs in secure mode and ignores
	// LD_LIBRARY_PATH.
	libMounts []libMount
}

// libMount is an overlay of private library directories (first) on a
// system one.
type libMount struct {
	lower  []string
	target string
}

// options points o at the private Exim: its binaries, its library path,
// and Root for detection, so the manager finds Exim even on a host without
// one.
func (x privateExim) options(o Options) Options {
	o.Root = x.root
	o.EximBinary = x.bin
	o.UpdateEximConf = x.updateConf
	o.Env = append(append([]string(nil), o.Env...), x.env...)
	return o
}

// command runs the private exim binary with its environment.
func (x privateExim) command(args ...string) *exec.Cmd {
	cmd := exec.Command(x.bin, args...)
	cmd.Env = append(os.Environ(), x.env...)
	return cmd
}

// eximFromDeb fetches exim4-daemon-light and exim4-config with `apt-get
// download` (never installing them) and unpacks them with dpkg-deb -x into
// os.TempDir()/smtpguard-exim-deb, which later runs reuse, together with
// the library packages they depend on that are not installed on this host;
// the binary then runs with LD_LIBRARY_PATH. On a host without Exim the
// Debian-exim account does not exist either: it is created for the test
// and removed after. The test fails, never skips, when the packages cannot
// be had.
func eximFromDeb(t *testing.T) privateExim {
	t.Helper()
	cache := trustedCache(t, eximDebCache)
	root := filepath.Join(cache, "root")
	if _, err := os.Stat(root); err != nil {
		fetchEximDebs(t, cache, root)
	}
	x := privateExim{
		root:       root,
		bin:        filepath.Join(root, "usr/sbin/exim4"),
		updateConf: filepath.Join(root, "usr/sbin/update-exim4.conf"),
		confDir:    filepath.Join(root, "etc/exim4"),
	}
	var libDirs []string
	mounts := map[string]*libMount{}
	for _, pattern := range []string{"usr/lib/*-linux-gnu*", "lib/*-linux-gnu*", "lib64"} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		for _, d := range m {
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
				continue
			}
			libDirs = append(libDirs, d)
			rel, _ := filepath.Rel(root, d)
			target, err := filepath.EvalSymlinks("/" + rel)
			if err != nil {
				continue // no such system directory: LD_LIBRARY_PATH only
			}
			if mounts[target] == nil {
				mounts[target] = &libMount{target: target}
			}
			mounts[target].lower = append(mounts[target].lower, d)
		}
	}
	for _, m := range mounts {
		x.libMounts = append(x.libMounts, libMount{lower: append(m.lower, m.target), target: m.target})
	}
	x.env = []string{"LD_LIBRARY_PATH=" + strings.Join(libDirs, ":")}
	for _, p := range []string{x.bin, x.updateConf, filepath.Join(x.confDir, "exim4.conf.template")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the exim packages unpacked in %s lack %s (remove %s to fetch them again): %v", root, p, cache, err)
		}
	}
	ldd := exec.Command("ldd", x.bin)
	ldd.Env = append(os.Environ(), x.env...)
	if out, err := ldd.CombinedOutput(); err != nil || strings.Contains(string(out), "not found") {
		t.Fatalf("the unpacked exim lacks shared libraries (remove %s to fetch them again): %v\n%s", cache, err, out)
	}
	ensureEximUser(t)
	// -bV reads a configuration: on a host without Exim there is none.
	check := filepath.Join(privateDir(t, "smtpguard-exim-check-"), "exim.conf")
	writeFile(t, check, "primary_hostname = smtpguard-test.invalid\nlog_file_path = "+filepath.Dir(check)+"/%slog\n")
	if out, err := x.command("-C", check, "-bV").CombinedOutput(); err != nil {
		t.Fatalf("the unpacked exim does not run (remove %s to fetch it again): %v\n%s", cache, err, out)
	}
	return x
}

// ensureEximUser creates the Debian-exim system account and group when
// this host has none (no Exim installed) and removes them at the end.
func ensureEximUser(t *testing.T) {
	t.Helper()
	if _, err := user.Lookup(eximUser); err == nil {
		return
	}
	if out, err := runFor(time.Minute, "", nil, "useradd", "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", eximUser); err != nil {
		t.Fatalf("useradd %s (for the private exim): %v\n%s", eximUser, err, out)
	}
	t.Logf("created the system account %s for the private exim; removed at the end", eximUser)
	t.Cleanup(func() {
		if out, err := runFor(time.Minute, "", nil, "userdel", eximUser); err != nil {
			t.Errorf("userdel %s: %v\n%s", eximUser, err, out)
		}
		// userdel removes the user's own group; make sure.
		if _, err := user.LookupGroup(eximUser); err == nil {
			runFor(time.Minute, "", nil, "groupdel", eximUser)
		}
	})
}

// fetchEximDebs downloads the packages into a scratch directory of cache,
// unpacks them into another and renames that to root, so root appears
// complete or not at all. Library packages (lib*) the packages depend on
// and the host lacks are fetched too, transitively.
func fetchEximDebs(t *testing.T, cache, root string) {
	t.Helper()
	scratch, err := os.MkdirTemp(cache, "fetch-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scratch) })
	download := func(pkgs ...string) ([]byte, error) {
		return runFor(5*time.Minute, scratch, nil, "apt-get", append([]string{"download"}, pkgs...)...)
	}
	if out, err := download(eximDebs...); err != nil {
		// Perhaps there are no package lists yet.
		if uout, uerr := runFor(5*time.Minute, "", nil, "apt-get", "update"); uerr != nil {
			t.Fatalf("`apt-get download %s` failed: %v\n%s\nand `apt-get update` failed too: %v\n%s\n"+
				"the Exim tests need Debian's exim packages (apt access)", strings.Join(eximDebs, " "), err, out, uerr, uout)
		}
		if out, err := download(eximDebs...); err != nil {
			t.Fatalf("`apt-get download %s` failed even after apt-get update: %v\n%s", strings.Join(eximDebs, " "), err, out)
		}
	}
	seen := map[string]bool{}
	for _, p := range eximDebs {
		seen[p] = true
	}
	// Breadth first over Depends, bounded by the number of packages.
	for round := 0; round < 20; round++ {
		debs, _ := filepath.Glob(filepath.Join(scratch, "*.deb"))
		var next []string
		for _, deb := range debs {
			out, err := runFor(time.Minute, "", nil, "dpkg-deb", "-f", deb, "Pre-Depends", "Depends")
			if err != nil {
				t.Fatalf("dpkg-deb -f %s: %v\n%s", deb, err, out)
			}
			for _, pkg := range missingLibraries(string(out)) {
				if !seen[pkg] {
					seen[pkg] = true
					next = append(next, pkg)
				}
			}
		}
		if len(next) == 0 {
			break
		}
		t.Logf("the host lacks libraries exim needs; unpacking them privately too: %s", strings.Join(next, " "))
		if out, err := download(next...); err != nil {
			t.Fatalf("apt-get download %s: %v\n%s", strings.Join(next, " "), err, out)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(scratch, "*.deb"))
	tree := filepath.Join(scratch, "root")
	for _, deb := range debs {
		if out, err := runFor(time.Minute, "", nil, "dpkg-deb", "-x", deb, tree); err != nil {
			t.Fatalf("dpkg-deb -x %s: %v\n%s", deb, err, out)
		}
	}
	if err := os.Rename(tree, root); err != nil {
		if _, serr := os.Stat(root); serr != nil {
			t.Fatalf("installing the unpacked packages: %v", err)
		}
		// Another run got there first.
	}
	names := make([]string, len(debs))
	for i, d := range debs {
		names[i] = filepath.Base(d)
	}
	t.Logf("unpacked %s into %s", strings.Join(names, " "), root)
}

// missingLibraries returns, from a Depends field ("libc6 (>= 2.34),
// libidn12 (>= 1.13), debconf | debconf-2.0"), the library packages of
// clauses no installed package satisfies. Other dependencies (exim4-base,
// debconf, adduser) concern installing the package, not running the binary.
func missingLibraries(depends string) []string {
	var out []string
	for _, line := range strings.Split(depends, "\n") {
		_, value, ok := strings.Cut(line, ":")
		if !ok {
			value = line
		}
		for _, clause := range strings.Split(value, ",") {
			var first string
			satisfied := false
			for _, alt := range strings.Split(clause, "|") {
				name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
				name, _, _ = strings.Cut(name, ":")
				if name == "" {
					continue
				}
				if first == "" {
					first = name
				}
				if debInstalled(name) {
					satisfied = true
				}
			}
			if !satisfied && strings.HasPrefix(first, "lib") {
				out = append(out, first)
			}
		}
	}
	return out
}

// debInstalled reports whether dpkg has the package installed.
func debInstalled(name string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", name).Output()
	return err == nil && strings.HasPrefix(string(out), "ii")
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
