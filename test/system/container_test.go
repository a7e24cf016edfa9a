//go:build linux

// Package system proves smtpguard's systemd unit in a real systemd: a
// minimal Debian 12 root booted with systemd-nspawn --boot, in a private
// network namespace and a cgroup of its own, so nothing reaches the host's
// network, firewall, cgroups or mail system.
package system

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// The root is built once with mmdebstrap and cached: Debian 12 minbase plus
// what the test uses inside. The MTA is installed in the root only.
const (
	rootCacheDir = "/var/cache/smtpguard-test"
	basePackages = "systemd,systemd-sysv,dbus,nftables,iproute2"
)

// rootImage is a cached container root: its tarball's name and the packages
// on top of minbase.
type rootImage struct{ name, packages string }

var (
	eximRoot    = rootImage{"systemd-root-bookworm.tar", basePackages + ",exim4-daemon-light"}
	postfixRoot = rootImage{"systemd-postfix-root-bookworm.tar", basePackages + ",postfix"}
)

// containerPath is PATH for commands run inside.
const containerPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// container is a booted systemd-nspawn container.
type container struct {
	t      *testing.T
	root   string
	leader int // the container's PID 1, as seen from the host
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (apt-get install %s): %v", name, pkg, err)
	}
	return p
}

// cachedRoot returns the root tarball, building it when it is missing.
func cachedRoot(t *testing.T, ctx context.Context, img rootImage) string {
	t.Helper()
	path := filepath.Join(rootCacheDir, img.name)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	requireTool(t, "mmdebstrap", "mmdebstrap")
	if err := os.MkdirAll(rootCacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(rootCacheDir, ".build-"+randomSuffix(t)+".tar")
	defer os.Remove(tmp)
	t.Logf("building the container root once (cached in %s): mmdebstrap --variant=minbase --include=%s bookworm", path, img.packages)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	// The Debian mirror this machine's apt already uses.
	mirror, err := exec.CommandContext(ctx, "../../scripts/debian-mirror").Output()
	if err != nil {
		t.Fatalf("scripts/debian-mirror (apt's sources name no Debian mirror; set SMTPGUARD_DEBIAN_MIRROR): %v", err)
	}
	cmd := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--include="+img.packages, "bookworm", tmp, strings.TrimSpace(string(mirror)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mmdebstrap: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// cgroupParents are the hierarchies nspawn places the container in: the
// cgroup2 mount (/sys/fs/cgroup/unified in hybrid mode, else /sys/fs/cgroup)
// and, in hybrid mode, the name=systemd hierarchy.
func cgroupParents(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, p := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"} {
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		var st unix.Statfs_t
		if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			out = append(out, "/sys/fs/cgroup")
		}
	}
	if len(out) == 0 {
		t.Fatal("no cgroup2 or name=systemd hierarchy mounted under /sys/fs/cgroup")
	}
	return out
}

// removeCgroup removes a cgroup directory and the ones the container's
// systemd created below it, deepest first, retrying while their processes
// exit.
func removeCgroup(dir string) error {
	var err error
	for range 50 {
		var dirs []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, werr error) error {
			if werr == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		err = nil
		for i := len(dirs) - 1; i >= 0; i-- {
			if rerr := os.Remove(dirs[i]); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = rerr
			}
		}
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// boot extracts the root into a fresh directory, installs files into it and
// boots it; Cleanup powers it off (or kills the nspawn and container pids
// it started) and removes the root and the cgroups. nspawnArgs are added
// to systemd-nspawn's command line.
func boot(t *testing.T, ctx context.Context, rootTar string, files map[string]string, nspawnArgs ...string) *container {
	t.Helper()
	nspawn := requireTool(t, "systemd-nspawn", "systemd-container")
	requireTool(t, "nsenter", "util-linux")
	root, err := os.MkdirTemp("/var/tmp", "smtpguard-nspawn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("removing the container root %s: %v", root, err)
		}
	})
	if out, err := exec.CommandContext(ctx, "tar", "-C", root, "--numeric-owner", "-xf", rootTar).CombinedOutput(); err != nil {
		t.Fatalf("extracting %s: %v\n%s", rootTar, err, out)
	}
	for dst, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	name := "sgtest-" + randomSuffix(t)
	var procsFiles []string
	for _, parent := range cgroupParents(t) {
		dir := filepath.Join(parent, "smtpguard-test-"+name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := removeCgroup(dir); err != nil {
				t.Errorf("removing cgroup %s: %v", dir, err)
			}
		})
		procsFiles = append(procsFiles, filepath.Join(dir, "cgroup.procs"))
	}
	// The shell moves itself into the test's cgroups, then becomes nspawn.
	// No machined or bus on the host: --register=no --keep-unit.
	script := `for f in $SMTPGUARD_CGROUPS; do echo $$ > "$f" || exit 1; done; exec "$@"`
	cmd := exec.Command("sh", append([]string{"-c", script, "sh", nspawn, "--boot", "--directory=" + root, "--machine=" + name,
		"--private-network", "--register=no", "--keep-unit", "--console=read-only"}, nspawnArgs...)...)
	cmd.Env = append(os.Environ(), "SMTPGUARD_CGROUPS="+strings.Join(procsFiles, " "))
	console := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = console, console
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting systemd-nspawn: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	c := &container{t: t, root: root}
	t.Cleanup(func() {
		// SIGTERM makes nspawn power the container off.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Log("container did not power off within 30s; killing it")
			if c.leader > 0 {
				syscall.Kill(c.leader, syscall.SIGKILL)
			}
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("container console:\n%s", console.String())
		}
	})

	// The leader is nspawn's child in another pid namespace.
	deadline := time.Now().Add(30 * time.Second)
	for c.leader == 0 {
		select {
		case <-exited:
			t.Fatalf("systemd-nspawn exited at start:\n%s", console.String())
		default:
		}
		c.leader = childInOtherPIDNS(cmd.Process.Pid)
		if c.leader == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no container init within 30s:\n%s", console.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// "offline" until systemd listens on its private socket; then --wait
	// waits for the end of the boot.
	var state string
	deadline = time.Now().Add(3 * time.Minute)
	for state != "running" && state != "degraded" {
		out, _ := c.run(ctx, 3*time.Minute, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(out)
		if time.Now().After(deadline) {
			t.Fatalf("container did not boot within 3 minutes: is-system-running = %q\nconsole:\n%s", state, console.String())
		}
		if state != "running" && state != "degraded" {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if state == "degraded" {
		failed, _ := c.run(ctx, time.Minute, "systemctl", "--failed", "--no-legend")
		t.Logf("container booted degraded; failed units (not ours):\n%s", failed)
	}
	return c
}

// childInOtherPIDNS is a child of pid in another pid namespace, or 0.
func childInOtherPIDNS(pid int) int {
	ours, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return 0
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		if ns, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "pid")); err == nil && ns != ours {
			return child
		}
	}
	return 0
}

// run runs a command inside the container (all its namespaces), bounded
// by timeout, and returns its combined output.
func (c *container) run(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.leader), "-a", "--", name}, args...)...)
	cmd.Env = []string{containerPath, "LC_ALL=C"}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in the container: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// ok runs a command inside that must succeed and returns its trimmed output.
func (c *container) ok(ctx context.Context, name string, args ...string) string {
	c.t.Helper()
	out, err := c.run(ctx, 2*time.Minute, name, args...)
	if err != nil {
		c.t.Fatalf("%v\n%s", err, out)
	}
	return strings.TrimSpace(out)
}

// dial opens a TCP connection from inside the container's network
// namespace; the socket stays there when the thread leaves.
func (c *container) dial(ctx context.Context, addr string) (net.Conn, error) {
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", c.leader))
	if err != nil {
		return nil, err
	}
	defer target.Close()
	type result struct {
		conn net.Conn
		err  error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			res <- result{nil, err}
			return
		}
		defer self.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			res <- result{nil, fmt.Errorf("entering the container's network namespace: %w", err)}
			return
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		// A thread that cannot go back stays locked and dies with us.
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		res <- result{conn, err}
	}()
	r := <-res
	return r.conn, r.err
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
