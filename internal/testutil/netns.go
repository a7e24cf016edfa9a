//go:build linux

package testutil

import (
	"bytes"
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

// NewNetNS creates a namespace and deletes it when the test ends.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	ns := &NetNS{Name: NetNSPrefix + randomHex(4)}
	run(t, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("delete netns %s: %v\n%s", ns.Name, err, out)
		}
	})
	ns.Exec(t, "ip", "link", "set", "lo", "up")
	return ns
}

// SetResolvConf gives the namespace its own /etc/resolv.conf: "ip netns exec"
// bind-mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf for the
// commands it runs. Removed when the test ends.
func (n *NetNS) SetResolvConf(t testing.TB, content string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Path is the namespace's bind mount, usable with setns(2) and WithNetNSFd.
func (n *NetNS) Path() string { return "/run/netns/" + n.Name }

// Exec runs a command inside the namespace and returns its stdout; the test
// fails with the command's output if it fails.
func (n *NetNS) Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("in %s: %s %s: %v\n%s%s", n.Name, name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// Command prepares a command that runs inside the namespace.
func (n *NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on a dedicated OS thread switched into the namespace, then
// switches the thread back. If switching back fails the thread stays locked,
// so the runtime discards it instead of reusing it in the wrong namespace.
func (n *NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(n.Path())
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("restore netns after %s: %w", n.Name, err) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Veth joins a and b with a veth pair and assigns the addresses (CIDR form);
// IPv6 addresses skip duplicate address detection so they work at once.
func Veth(t testing.TB, a *NetNS, aAddrs []string, b *NetNS, bAddrs []string) {
	t.Helper()
	ifA, ifB := "sgv"+randomHex(3), "sgv"+randomHex(3)
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

// ListenTCP listens on addr inside ns; every connection gets an SMTP-like
// greeting naming addr ("220 192.0.2.2:25 smtpguard-test") and is closed. The listener closes when the test ends.
func ListenTCP(t testing.TB, ns *NetNS, addr string) {
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
		t.Fatalf("listen on %s in %s: %v", addr, ns.Name, err)
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
			c.SetDeadline(time.Now().Add(2 * time.Second))
			// The banner names the listener, so tests see which server answered.
			c.Write([]byte("220 " + addr + " smtpguard-test\r\n"))
			c.Close()
		}
	}()
}
