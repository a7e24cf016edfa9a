//go:build linux

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// Bypass vectors: one test each, asserting an ordinary user cannot reach a
// remote SMTP server that way, or, where the design cannot close the vector,
// that it is a documented limitation that status reports.

const vectorEnv = "SMTPGUARD_E2E_VECTOR"

type vectorRequest struct {
	Vector   string
	UID, GID uint32
	Addr     string
}

type vectorResult struct {
	Connected bool
	Errno     string
	Err       string
	UIDInside int // getuid() as the vector's process saw it
}

// runVector is the helper side, entered from TestMain in a child process.
func runVector() {
	var req vectorRequest
	if err := json.Unmarshal([]byte(os.Getenv(vectorEnv)), &req); err != nil {
		fmt.Fprintln(os.Stderr, "bad vector request:", err)
		os.Exit(2)
	}
	drop := func() {
		if err := testutil.DropPrivileges(req.UID, req.GID, nil); err != nil {
			fail(err)
		}
	}
	ap := netip.MustParseAddrPort(req.Addr)
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	var res vectorResult
	switch req.Vector {
	case "tfo":
		drop()
		fd := mustSocket()
		// TCP Fast Open: the SYN leaves from sendto itself, carrying data
		// once a cookie is known; there is no connect() to intercept.
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 0)
		err := unix.Sendto(fd, []byte("EHLO bypass\r\n"), unix.MSG_FASTOPEN, sa)
		if err == nil {
			err = waitResult(fd)
		}
		res = outcome(err)
	case "setuid-drop":
		fd := mustSocket() // created by root: the socket's owner is uid 0
		drop()
		res = outcome(connectWait(fd, sa))
	case "io_uring":
		drop()
		fd := mustSocket()
		err := ioUringConnect(fd, rawInet4(ap.Addr().As4(), ap.Port()))
		if err == nil {
			err = waitResult(fd)
		}
		res = outcome(err)
	case "userns":
		// Started as the ordinary user under "unshare -Ur": root inside.
		fd := mustSocket()
		res = outcome(connectWait(fd, sa))
	default:
		fail(fmt.Errorf("unknown vector %q", req.Vector))
	}
	res.UIDInside = os.Getuid()
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(2)
}

func mustSocket() int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fail(err)
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 3})
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3})
	return fd
}

// connectWait is a blocking connect bounded by SO_SNDTIMEO. A signal (the Go
// runtime preempts threads with SIGURG) interrupts connect with EINTR while
// the connection goes on in the kernel: then its outcome is waited for.
func connectWait(fd int, sa unix.Sockaddr) error {
	if err := unix.Connect(fd, sa); err != nil {
		if !errors.Is(err, unix.EINTR) {
			return err
		}
		if err := awaitConnect(fd); err != nil {
			return err
		}
	}
	return waitResult(fd)
}

// awaitConnect waits (bounded) for an interrupted connect to finish and
// returns its result.
func awaitConnect(fd int) error {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if n > 0 {
			soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err != nil {
				return err
			}
			if soErr != 0 {
				return unix.Errno(soErr)
			}
			return nil
		}
	}
	return unix.ETIMEDOUT
}

// waitResult reads the greeting: a refused connection reports its error here.
func waitResult(fd int) error {
	buf := make([]byte, 64)
	n, err := unix.Read(fd, buf)
	for i := 0; errors.Is(err, unix.EINTR) && i < 100; i++ {
		n, err = unix.Read(fd, buf)
	}
	if err == nil && n > 0 {
		return nil
	}
	if err == nil {
		return errors.New("connection closed without a greeting")
	}
	return err
}

func outcome(err error) vectorResult {
	if err == nil {
		return vectorResult{Connected: true}
	}
	r := vectorResult{Err: err.Error()}
	var errno unix.Errno
	if errors.As(err, &errno) {
		r.Errno = unix.ErrnoName(errno)
	}
	return r
}

// vector runs one vector in the client namespace, optionally under a wrapper
// command (e.g. setpriv ... unshare -Ur).
func (w *world) vector(t *testing.T, name string, u testutil.User, addr string, wrapper ...string) vectorResult {
	t.Helper()
	body, _ := json.Marshal(vectorRequest{Vector: name, UID: u.UID, GID: u.GID, Addr: addr})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if len(wrapper) > 0 {
		exe = worldReadableCopy(t, exe) // the wrapper runs it as the ordinary user
	}
	cmd := w.client.Command(append(wrapper, exe)[0], append(wrapper, exe)[1:]...)
	cmd.Env = append(os.Environ(), vectorEnv+"="+string(body))
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("vector %s: %v %s", name, err, stderr)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("vector %s took %v: a blocked connection must fail at once", name, time.Since(start))
	}
	var r vectorResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("vector %s output %q: %v", name, out, err)
	}
	return r
}

func TestPrivilegedBypassVectors(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	target := "192.0.2.2:25"

	t.Run("TCP Fast Open sendto is refused", func(t *testing.T) {
		w.t = t
		r := w.vector(t, "tfo", w.plain, target)
		if r.Connected || r.Errno != "ECONNREFUSED" {
			t.Errorf("TFO as %s = %+v, want ECONNREFUSED", w.plain.Name, r)
		}
	})
	t.Run("an unprivileged user namespace's root is still the user", func(t *testing.T) {
		w.t = t
		r := w.vector(t, "userns", w.plain, target,
			"setpriv", "--reuid", strconv.Itoa(int(w.plain.UID)), "--regid", strconv.Itoa(int(w.plain.GID)), "--clear-groups", "unshare", "-Ur")
		if r.UIDInside != 0 {
			t.Fatalf("uid inside the user namespace = %d, want 0 (the vector did not run as its root)", r.UIDInside)
		}
		if r.Connected || r.Errno != "ECONNREFUSED" {
			t.Errorf("root of an unprivileged user namespace = %+v, want ECONNREFUSED: the kernel matches the real uid", r)
		}
	})
	t.Run("an io_uring connect is refused", func(t *testing.T) {
		w.t = t
		r := w.vector(t, "io_uring", w.plain, target)
		if r.Connected || r.Errno != "ECONNREFUSED" {
			t.Errorf("io_uring connect as %s = %+v, want ECONNREFUSED", w.plain.Name, r)
		}
		// The same path as root must connect, or the refusal above proves nothing.
		if r := w.vector(t, "io_uring", testutil.User{UID: 0, GID: 0}, target); !r.Connected {
			t.Errorf("io_uring connect as root = %+v, want connected", r)
		}
	})
	t.Run("a non-blocking connect is refused", func(t *testing.T) {
		w.t = t
		w.expectBlocked(&w.plain, target) // ConnectAs connects non-blocking and polls
	})
	t.Run("a socket root opened keeps root's uid: a documented limitation", func(t *testing.T) {
		w.t = t
		r := w.vector(t, "setuid-drop", w.plain, target)
		if !r.Connected {
			t.Fatalf("setuid after socket() = %+v; the limitation no longer exists: update limitations() and this test", r)
		}
		if r.UIDInside != int(w.plain.UID) {
			t.Errorf("the vector ran as uid %d, want %d", r.UIDInside, w.plain.UID)
		}
		var st struct {
			Limitations []string `json:"limitations"`
		}
		json.Unmarshal([]byte(w.sgOK("status", "--json")), &st)
		if !strings.Contains(strings.Join(st.Limitations, "\n"), "keeps its owner's uid") {
			t.Errorf("status limitations = %q, want this vector reported", st.Limitations)
		}
	})
	t.Run("leaving an allowed group closes the door again", func(t *testing.T) {
		w.t = t
		w.sgOK("allow", "group", w.group)
		member := testutil.NewUser(t, "memb", "", w.group)
		w.sgOK("enable", "--backend", "nft") // without the daemon, re-applying re-resolves the group
		w.expectReach(&member, target)
		if out, err := exec.Command("gpasswd", "-d", member.Name, w.group).CombinedOutput(); err != nil {
			t.Fatalf("gpasswd -d: %v: %s", err, out)
		}
		w.sgOK("enable", "--backend", "nft") // without the daemon, re-applying re-resolves
		w.expectBlocked(&member, target)
	})
	t.Run("a process in another network namespace is not covered by nft: a documented limitation", func(t *testing.T) {
		w.t = t
		// A "container" with its own network stack, routed through the host
		// (the client namespace), as Docker or LXC do.
		container := testutil.NewNetNS(t)
		testutil.Veth(t, w.client, []string{"2001:db8:c::1/64"}, container, []string{"2001:db8:c::2/64"})
		w.client.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
		container.Exec(t, "ip", "-6", "route", "add", "default", "via", "2001:db8:c::1")
		w.server.Exec(t, "ip", "-6", "route", "add", "2001:db8:c::/64", "via", "2001:db8::1")
		r := testutil.ConnectAs(t, container, &w.plain, "[2001:db8::2]:25")[0]
		if !r.OK {
			t.Fatalf("from another network namespace: %s; if nft now covers containers, update limitations() and this test", r)
		}
		var st struct {
			Limitations []string `json:"limitations"`
		}
		json.Unmarshal([]byte(w.sgOK("status", "--json")), &st)
		if !strings.Contains(strings.Join(st.Limitations, "\n"), "other network namespaces") {
			t.Errorf("status limitations = %q, want this gap reported", st.Limitations)
		}
	})
	w.t = t
	w.sgOK("disable")
}

// worldReadableCopy copies the test binary where an unprivileged user can run
// it: go test builds it in a directory only root may enter.
func worldReadableCopy(t *testing.T, exe string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "smtpguard-vector-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dst := dir + "/vector"
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}
