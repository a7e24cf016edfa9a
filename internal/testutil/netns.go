//go:build linux

package testutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NetNS is a named network namespace (ip netns add) with loopback up.
type NetNS struct {
	Name string
}

func newNetNSName() string { return NetNSPrefix + randomHex(4) }

// NewNetNS creates a namespace named sgt-<8 hex digits>, brings its loopback
// up, and deletes it when the test ends.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	ns := &NetNS{Name: newNetNSName()}
	if err := claim(kindNetNS, ns.Name); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := command("ip", "netns", "add", ns.Name); err != nil {
		release(kindNetNS, ns.Name)
		t.Fatalf("ip netns add %s: %v\n%s", ns.Name, err, errOut)
	}
	t.Cleanup(func() {
		if err := deleteNetNS(ns.Name); err != nil {
			t.Errorf("delete network namespace %s: %v", ns.Name, err)
		}
		release(kindNetNS, ns.Name)
	})
	ns.Exec(t, "ip", "link", "set", "lo", "up")
	return ns
}

func deleteNetNS(name string) error {
	if _, errOut, err := command("ip", "netns", "delete", name); err != nil {
		if _, serr := os.Stat("/run/netns/" + name); errors.Is(serr, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(errOut)))
	}
	return nil
}

// SetResolvConf gives the namespace its own /etc/resolv.conf: "ip netns exec"
// bind-mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf for the
// commands it runs. Removed when the test ends.
func (n *NetNS) SetResolvConf(t testing.TB, content string) {
	t.Helper()
	dir := netnsEtcDir(n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// netnsEtcDir holds the files "ip netns exec" bind-mounts over /etc.
func netnsEtcDir(name string) string { return filepath.Join("/etc/netns", name) }

// Path is the namespace's bind mount, usable with setns(2) and WithNetNSFd.
func (n *NetNS) Path() string { return "/run/netns/" + n.Name }

// Exec runs `ip netns exec <ns> name args...` (bounded to two minutes) and
// returns its stdout; the test fails with the command's output if it fails.
func (n *NetNS) Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	if err != nil {
		t.Fatalf("in network namespace %s: %s %s: %v\n%s%s", n.Name, name, strings.Join(args, " "), err, stdout, stderr)
	}
	return string(stdout)
}

// Command prepares a command that runs inside the namespace, for callers that
// need its exit status, stderr, or a long-running process.
func (n *NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on a dedicated goroutine locked to its OS thread, with that
// thread switched into the namespace, then switches the thread back. If
// switching back fails the thread stays locked, so the runtime ends it with
// the goroutine instead of reusing it in the wrong namespace. Goroutines fn
// starts do not run in the namespace; sockets fn creates stay in it.
func (n *NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- n.doLocked(fn)
	}()
	return <-errc
}

// doLocked runs on the locked thread; it unlocks it unless restoring failed.
func (n *NetNS) doLocked(fn func() error) error {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open(n.Path())
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread() // still in the original namespace
		return fmt.Errorf("setns into %s: %w", n.Name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it exits with this goroutine.
		return errors.Join(ferr, fmt.Errorf("restore network namespace after %s: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Veth joins a and b with a veth pair (created directly inside them, never in
// the host's namespace), assigns the addresses (CIDR form) and brings both
// ends up. IPv6 addresses are added with nodad so they work at once.
func Veth(t testing.TB, a *NetNS, aAddrs []string, b *NetNS, bAddrs []string) {
	t.Helper()
	ifA, ifB := "sgv"+randomHex(4), "sgv"+randomHex(4)
	run(t, "ip", "link", "add", ifA, "netns", a.Name, "type", "veth", "peer", "name", ifB, "netns", b.Name)
	for _, side := range []struct {
		ns    *NetNS
		iface string
		addrs []string
	}{{a, ifA, aAddrs}, {b, ifB, bAddrs}} {
		for _, addr := range side.addrs {
			args := []string{"addr", "add", addr, "dev", side.iface}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			side.ns.Exec(t, "ip", args...)
		}
		side.ns.Exec(t, "ip", "link", "set", side.iface, "up")
	}
}

// Banner is what ListenTCP's listeners send: "220 <addr> smtpguard-test\r\n",
// naming the listener so a test can tell which server answered (redirect mode).
func Banner(addr string) string { return "220 " + addr + " smtpguard-test\r\n" }

// ListenTCP listens on addr (such as "192.0.2.2:25", "[2001:db8::2]:25" or
// "127.0.0.1:25") inside ns. Every connection gets Banner(addr) at once and
// is closed. The listener closes when the test ends.
func ListenTCP(t testing.TB, ns *NetNS, addr string) {
	t.Helper()
	greeting := []byte(Banner(addr))
	acceptTCP(t, ns, addr, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write(greeting)
		c.Close()
	})
}

// acceptTCP listens on addr inside ns and hands every connection to handle,
// on one goroutine, until the test ends.
func acceptTCP(t testing.TB, ns *NetNS, addr string, handle func(net.Conn)) {
	t.Helper()
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		// The socket belongs to the namespace it was created in, whichever
		// thread later accepts on it.
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in network namespace %s: %v", addr, ns.Name, err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
}
