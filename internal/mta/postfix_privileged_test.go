//go:build linux

package mta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// postfixDebCache is where the extracted postfix package is kept between
// runs, under os.TempDir().
const postfixDebCache = "smtpguard-postfix-deb"

// Accounts of the private Postfix configuration. Postfix insists that
// mail_owner, setgid_group and default_privs (nobody) have pairwise
// different user and group IDs, so nobody/nogroup cannot serve here; daemon
// and mail exist on every Debian system (base-passwd).
const (
	postfixTestMailOwner   = "daemon"
	postfixTestSetgidGroup = "mail"
)

// TestPrivilegedPostfixLimits runs the real postconf and `postfix check` of
// Debian's postfix package on a private configuration. Installing the
// package would replace the host's MTA, so it is not installed:
// postfixFromDeb unpacks it into a private directory and the binaries run
// from there.
func TestPrivilegedPostfixLimits(t *testing.T) {
	testutil.Privileged(t)
	start := time.Now()
	pf := postfixFromDeb(t)
	t.Logf("postfix package ready in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	configDir, maillog := pf.config(t)
	var reloads int
	m, err := NewPostfix(ctx, Options{
		PostconfBinary:   pf.postconf,
		PostfixBinary:    pf.postfix,
		PostfixConfigDir: configDir,
		Env:              pf.env,
		Reload: func(context.Context) error {
			reloads++
			return nil
		},
	}, systemDirectory(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(maillog); err == nil {
				t.Logf("postfix log:\n%s", b)
			}
		}
	})

	info, err := m.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Version == "" || info.Config != configDir {
		t.Errorf("Info() = version %q, config %q; want a version and %s", info.Version, info.Config, configDir)
	}
	initial := info.Limits

	want := Limits{MaxConnections: 30, MaxPerHost: 10}
	before, err := m.SetLimits(ctx, want)
	if err != nil {
		t.Fatalf("SetLimits(%+v): %v", want, err)
	}
	if before != initial {
		t.Errorf("SetLimits returned before = %+v, want %+v", before, initial)
	}
	info, err = m.Info(ctx)
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
	reloads = 0

	// A configuration postconf reads but `postfix check` refuses (an
	// unknown mail_owner): the files written for the check are put back
	// byte for byte and nothing is reloaded.
	mainPath, masterPath := filepath.Join(configDir, "main.cf"), filepath.Join(configDir, "master.cf")
	mainCF := readFileBytes(t, mainPath)
	broken := setMainCF(mainCF, "mail_owner", "smtpguard-no-such-user")
	if err := os.WriteFile(mainPath, broken, 0o644); err != nil {
		t.Fatal(err)
	}
	masterCF := readFileBytes(t, masterPath)
	refused := Limits{MaxConnections: 40, MaxPerHost: 20}
	before, err = m.SetLimits(ctx, refused)
	if err == nil || !strings.Contains(err.Error(), "postfix check") {
		t.Fatalf("SetLimits(%+v) with an unknown mail_owner = %v; want postfix check to refuse it", refused, err)
	}
	t.Logf("refused as expected: %v", err)
	if before != want {
		t.Errorf("refused SetLimits returned before = %+v, want %+v", before, want)
	}
	if got := readFileBytes(t, mainPath); !bytes.Equal(got, broken) {
		t.Errorf("main.cf changed by a refused SetLimits:\n%s\nwant\n%s", got, broken)
	}
	if got := readFileBytes(t, masterPath); !bytes.Equal(got, masterCF) {
		t.Errorf("master.cf changed by a refused SetLimits:\n%s\nwant\n%s", got, masterCF)
	}
	if reloads != 0 {
		t.Errorf("refused SetLimits reloaded %d times", reloads)
	}
	if entries, err := os.ReadDir(configDir); err != nil || len(entries) != 2 {
		t.Errorf("config directory holds %v (%v); want only main.cf and master.cf", entries, err)
	}
}

// extractedPostfix is Debian's postfix package unpacked in a private
// directory.
type extractedPostfix struct {
	root               string // where the package is unpacked
	postconf, postfix  string
	libDir             string   // libpostfix-*.so (Debian: /usr/lib/postfix)
	env                []string // what the binaries need to start
	daemonDir, metaDir string
}

// trustedCache is os.TempDir()/name, made if missing, for the Debian
// packages a test unpacks and runs as root: only a directory that root alone
// can write to may be trusted, so anything else fails the test.
func trustedCache(t *testing.T, name string) string {
	t.Helper()
	cache := filepath.Join(os.TempDir(), name)
	if err := os.Mkdir(cache, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	fi, err := os.Lstat(cache)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		t.Fatalf("%s is not a directory owned by uid %d and writable only by it (%v); remove it", cache, os.Geteuid(), fi.Mode())
	}
	return cache
}

// postfixFromDeb fetches Debian's postfix package with `apt-get download`
// (without installing it) and unpacks it with dpkg-deb -x into
// os.TempDir()/smtpguard-postfix-deb, which later runs reuse. The test
// fails, never skips, when the package cannot be had.
func postfixFromDeb(t *testing.T) extractedPostfix {
	t.Helper()
	cache := trustedCache(t, postfixDebCache)
	root := filepath.Join(cache, "root")
	pf := extractedPostfix{
		root:      root,
		postconf:  filepath.Join(root, "usr/sbin/postconf"),
		postfix:   filepath.Join(root, "usr/sbin/postfix"),
		libDir:    filepath.Join(root, "usr/lib/postfix"),
		daemonDir: filepath.Join(root, "usr/lib/postfix/sbin"),
		metaDir:   filepath.Join(root, "etc/postfix"),
	}
	pf.env = []string{"LD_LIBRARY_PATH=" + pf.libDir}
	if _, err := os.Stat(root); err != nil {
		fetchPostfixDeb(t, cache, root)
	}
	for _, p := range []string{pf.postconf, pf.postfix, filepath.Join(pf.libDir, "libpostfix-global.so"), filepath.Join(pf.daemonDir, "postfix-script")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the postfix package unpacked in %s lacks %s (remove %s to fetch it again): %v", root, p, cache, err)
		}
	}
	if out, err := pf.command(t, 30*time.Second, pf.postconf, "-d", "-h", "mail_version"); err != nil {
		t.Fatalf("the unpacked postconf does not run (remove %s to fetch it again): %v\n%s", cache, err, out)
	}
	return pf
}

// fetchPostfixDeb downloads the package into a scratch directory of cache,
// unpacks it into another and renames that to root, so root appears
// complete or not at all.
func fetchPostfixDeb(t *testing.T, cache, root string) {
	t.Helper()
	scratch, err := os.MkdirTemp(cache, "fetch-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scratch) })
	download := func() ([]byte, error) {
		return runFor(3*time.Minute, scratch, nil, "apt-get", "download", "postfix")
	}
	out, err := download()
	if err != nil {
		// Perhaps there are no package lists yet.
		if uout, uerr := runFor(5*time.Minute, "", nil, "apt-get", "update"); uerr != nil {
			t.Fatalf("`apt-get download postfix` failed: %v\n%s\nand `apt-get update` failed too: %v\n%s\n"+
				"TestPrivilegedPostfixLimits needs Debian's postfix package (apt access) to run postconf and postfix check", err, out, uerr, uout)
		}
		if out, err = download(); err != nil {
			t.Fatalf("`apt-get download postfix` failed even after apt-get update: %v\n%s\n"+
				"TestPrivilegedPostfixLimits needs Debian's postfix package (apt access) to run postconf and postfix check", err, out)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(scratch, "postfix_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download postfix left %v in %s, want one postfix_*.deb\n%s", debs, scratch, out)
	}
	tree := filepath.Join(scratch, "root")
	if out, err := runFor(time.Minute, "", nil, "dpkg-deb", "-x", debs[0], tree); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", debs[0], err, out)
	}
	if err := os.Rename(tree, root); err != nil {
		if _, serr := os.Stat(root); serr != nil {
			t.Fatalf("installing the unpacked package: %v", err)
		}
		// Another run got there first.
	}
	t.Logf("unpacked %s into %s", filepath.Base(debs[0]), root)
}

// runFor runs a command in dir with a timeout and returns its combined
// output.
func runFor(timeout time.Duration, dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timed out after %v)", err, timeout)
	}
	return out, err
}

func (pf extractedPostfix) command(t *testing.T, timeout time.Duration, name string, args ...string) ([]byte, error) {
	t.Helper()
	return runFor(timeout, "", pf.env, name, args...)
}

// config writes a private configuration directory from the package's
// templates (main.cf.debian, master.cf.dist) in which `postfix -c DIR
// check` works without anything outside the unpacked package and private
// directories: queue, data and log live in a scratch directory removed at
// the end. It returns the directory and the log file.
func (pf extractedPostfix) config(t *testing.T) (dir, maillog string) {
	t.Helper()
	owner, err := user.Lookup(postfixTestMailOwner)
	if err != nil {
		t.Fatalf("mail_owner for the private postfix: %v", err)
	}
	if _, err := user.LookupGroup(postfixTestSetgidGroup); err != nil {
		t.Fatalf("setgid_group for the private postfix: %v", err)
	}
	uid, err := strconv.Atoi(owner.Uid)
	if err != nil {
		t.Fatal(err)
	}
	base := privateDir(t, "smtpguard-postfix-")
	dir = filepath.Join(base, "config")
	queue := filepath.Join(base, "queue")
	data := filepath.Join(base, "data")
	logDir := filepath.Join(base, "log")
	for _, d := range []string{dir, queue, data, logDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(data, uid, -1); err != nil { // as postfix check wants it
		t.Fatal(err)
	}
	templates := filepath.Join(pf.root, "usr/share/postfix")
	mainCF := readFileBytes(t, filepath.Join(templates, "main.cf.debian"))
	masterCF := readFileBytes(t, filepath.Join(templates, "master.cf.dist"))
	maillog = filepath.Join(logDir, "maillog")
	settings := []struct{ name, value string }{
		{"daemon_directory", pf.daemonDir},
		{"meta_directory", pf.metaDir},
		{"shlib_directory", pf.libDir},
		{"command_directory", filepath.Join(pf.root, "usr/sbin")},
		{"queue_directory", queue},
		{"data_directory", data},
		{"mail_owner", postfixTestMailOwner},
		{"setgid_group", postfixTestSetgidGroup},
		// postfix passes on only these to postfix-script and postconf.
		{"import_environment", "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME LD_LIBRARY_PATH"},
		// Diagnostics go to a private file, not the host's syslog.
		{"maillog_file", maillog},
		{"maillog_file_prefixes", logDir},
		{"myhostname", "smtpguard-test.invalid"},
	}
	for _, s := range settings {
		mainCF = setMainCF(mainCF, s.name, s.value)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), mainCF, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), masterCF, 0o644); err != nil {
		t.Fatal(err)
	}
	// Postfix waits until main.cf is a few seconds old before it reads it
	// (a guard against editors); backdating the fresh files saves that
	// wait here. SetLimits's own writes still pay it.
	old := time.Now().Add(-time.Minute)
	for _, f := range []string{"main.cf", "master.cf"} {
		if err := os.Chtimes(filepath.Join(dir, f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	// The configuration must pass before the test changes it.
	if out, err := pf.command(t, time.Minute, pf.postfix, "-c", dir, "check"); err != nil {
		log, _ := os.ReadFile(maillog)
		t.Fatalf("postfix -c %s check fails on the private configuration: %v\n%s\nlog:\n%s", dir, err, out, log)
	}
	return dir, maillog
}
