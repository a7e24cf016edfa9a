//go:build linux

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	Exe      string // fd-pass: the copy of this binary the receiving user runs
	Cgroup   string // fd-pass-outside: the cgroup the receiver is started in
}

type vectorResult struct {
	Connected  bool
	Errno      string
	Err        string
	UIDInside  int // getuid() as the vector's process saw it (fd-pass: the receiver)
	EUIDInside int // geteuid()
	// Cgroup is the connecting process's cgroup, Creator the socket
	// creator's (differs for fd-pass-outside).
	Cgroup, Creator string
}

// ownCgroup is the calling process's cgroup2 path, from /proc/self/cgroup.
func ownCgroup() string {
	data, _ := os.ReadFile("/proc/self/cgroup")
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
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
	case "seteuid":
		// Only the effective uid changes: the real uid stays root's.
		if err := syscall.Setgroups(nil); err != nil {
			fail(err)
		}
		if err := syscall.Setresgid(-1, int(req.GID), -1); err != nil {
			fail(err)
		}
		if err := syscall.Setresuid(-1, int(req.UID), -1); err != nil {
			fail(err)
		}
		fd := mustSocket() // owned by the effective uid, the ordinary user
		res = outcome(connectWait(fd, sa))
	case "io_uring-sqpoll":
		// Root sets up a ring whose kernel thread submits with root's
		// credentials, then drops to the user, who opens the socket and
		// queues the connect.
		ring, err := newIOURing(ioringSetupSqpoll)
		if err != nil {
			fail(err)
		}
		drop()
		fd := mustSocket()
		err = ring.connect(fd, rawInet4(ap.Addr().As4(), ap.Port()))
		if err == nil {
			err = waitResult(fd)
		}
		res = outcome(err)
	case "io_uring-personality":
		// Root registers its credentials with a ring as a personality,
		// then drops to the user, who opens the socket and submits the
		// connect under that personality.
		ring, err := newIOURing(0)
		if err != nil {
			fail(err)
		}
		if err := ring.registerPersonality(); err != nil {
			fail(err)
		}
		drop()
		fd := mustSocket()
		err = ring.connect(fd, rawInet4(ap.Addr().As4(), ap.Port()))
		if err == nil {
			err = waitResult(fd)
		}
		res = outcome(err)
	case "fd-pass", "fd-pass-outside":
		// Root opens the socket and passes it over a Unix socket
		// (SCM_RIGHTS) to a process of the ordinary user, which connects;
		// fd-pass-outside runs outside the test's cgroup and starts the
		// receiver inside it.
		res = passFd(req, sa)
	case "fd-receive":
		res = receiveFd(sa)
	case "userns":
		// Started as the ordinary user under "unshare -Ur": root inside.
		fd := mustSocket()
		res = outcome(connectWait(fd, sa))
	default:
		fail(fmt.Errorf("unknown vector %q", req.Vector))
	}
	if !strings.HasPrefix(req.Vector, "fd-pass") {
		res.UIDInside, res.EUIDInside = os.Getuid(), os.Geteuid()
		res.Cgroup = ownCgroup()
	}
	if req.Vector != "fd-receive" {
		res.Creator = ownCgroup()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

// passFd is the root side of fd-pass: it starts the receiver as the user
// with one end of a socket pair as its fd 3, sends it the socket, and
// returns the receiver's result.
func passFd(req vectorRequest, sa *unix.SockaddrInet4) vectorResult {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fail(err)
	}
	theirs := os.NewFile(uintptr(pair[1]), "fd-receive")
	body, _ := json.Marshal(vectorRequest{Vector: "fd-receive", Addr: req.Addr})
	cmd := exec.Command(req.Exe)
	cmd.Env = append(os.Environ(), vectorEnv+"="+string(body))
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: req.UID, Gid: req.GID, Groups: []uint32{}}}
	if req.Cgroup != "" {
		cg, err := os.Open(req.Cgroup)
		if err != nil {
			fail(err)
		}
		defer cg.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cg.Fd())
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Start(); err != nil {
		fail(fmt.Errorf("start the receiver %s: %w", req.Exe, err))
	}
	theirs.Close()
	fd := mustSocket() // created by root: the socket's owner is uid 0
	if err := unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(fd), nil, 0); err != nil {
		fail(fmt.Errorf("send the socket: %w", err))
	}
	unix.Close(fd)
	if err := cmd.Wait(); err != nil {
		fail(fmt.Errorf("receiver: %w", err))
	}
	var res vectorResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		fail(fmt.Errorf("receiver output %q: %w", out.String(), err))
	}
	return res
}

// receiveFd is the user side of fd-pass: receive the socket on fd 3 and
// connect it.
func receiveFd(sa *unix.SockaddrInet4) vectorResult {
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(3, buf, oob, 0)
	for i := 0; errors.Is(err, unix.EINTR) && i < 100; i++ {
		_, oobn, _, _, err = unix.Recvmsg(3, buf, oob, 0)
	}
	if err != nil {
		fail(fmt.Errorf("receive the socket: %w", err))
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		fail(fmt.Errorf("control messages %v: %v", msgs, err))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		fail(fmt.Errorf("passed fds %v: %v", fds, err))
	}
	return outcome(connectWait(fds[0], sa))
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

// vector runs one vector in the client namespace (under bpf as a process of
// the test's cgroup), optionally under a wrapper command (e.g. setpriv ...
// unshare -Ur).
func (w *world) vector(t *testing.T, name string, u testutil.User, addr string, wrapper ...string) vectorResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	req := vectorRequest{Vector: name, UID: u.UID, GID: u.GID, Addr: addr}
	start := w.start
	if strings.HasPrefix(name, "fd-pass") {
		req.Exe = worldReadableCopy(t, exe) // the receiver runs it as the ordinary user
	}
	if name == "fd-pass-outside" && w.isBPF() {
		req.Cgroup, start = w.cg.Path, (*exec.Cmd).Start
	}
	if len(wrapper) > 0 {
		exe = worldReadableCopy(t, exe) // the wrapper runs it as the ordinary user
	}
	body, _ := json.Marshal(req)
	argv := append(wrapper, exe)
	cmd := w.netCommand(w.client, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), vectorEnv+"="+string(body))
	var out, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	began := time.Now()
	if err := start(cmd); err != nil {
		t.Fatalf("vector %s: %v", name, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("vector %s: %v %s", name, err, stderr.String())
	}
	if time.Since(began) > 5*time.Second {
		t.Errorf("vector %s took %v: a blocked connection must fail at once", name, time.Since(began))
	}
	var r vectorResult
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatalf("vector %s output %q: %v", name, out.String(), err)
	}
	return r
}

// bypassVectors are the ways an ordinary user might reach a remote SMTP
// server other than a plain connect(). gaps names the backends that let the
// vector through by design, each with the words of the limitation its status
// reports for it; under the other backends the vector is refused and status
// must report none of those words. why says why the backends differ.
var bypassVectors = []struct {
	vector string
	gaps   map[string]string
	why    string
}{
	{vector: "tfo", why: "sendto(MSG_FASTOPEN) sends the SYN without connect(): nft sees the packet, bpf's connect hooks run for it too"},
	{vector: "io_uring", why: "IORING_OP_CONNECT runs in the submitting task, with its credentials"},
	{
		vector: "setuid-drop", gaps: map[string]string{"nft": "setuid after socket()"},
		why: "nft matches the socket's owner (root, who created it); bpf the real uid of the task calling connect()",
	},
	{
		vector: "fd-pass", gaps: map[string]string{"nft": "fd passing"},
		why: "a socket root created and passed over a Unix socket keeps root as its owner (nft); bpf sees the receiving task's real uid",
	},
	{
		vector: "seteuid", gaps: map[string]string{"bpf": "seteuid"},
		why: "seteuid also sets the fsuid, which owns the socket (nft refuses); the real uid stays root's (bpf lets it through)",
	},
	{
		vector: "io_uring-sqpoll", gaps: map[string]string{"bpf": "SQPOLL"},
		why: "the user's socket is the user's (nft refuses); the connect runs in root's SQPOLL kernel thread with root's credentials (bpf lets it through)",
	},
	{
		vector: "io_uring-personality", gaps: map[string]string{"bpf": "personality"},
		why: "the user's socket is the user's (nft refuses); the request runs with the credentials root registered as its personality (bpf lets it through)",
	},
	{
		vector: "fd-pass-outside", gaps: map[string]string{"nft": "fd passing", "bpf": "created outside the cgroup"},
		why: "root's socket keeps its owner (nft); a socket created outside the cgroup has no cgroup program, the cgroup being bound at socket() (bpf)",
	},
}

// TestPrivilegedBypassVectors runs every vector against every backend and
// asserts the documented outcome: refused, or let through and reported by
// status as a limitation. The same vector as root must connect, or a refusal
// proves nothing.
func TestPrivilegedBypassVectors(t *testing.T) {
	forEachBackend(t, testBypassVectors)
}

func testBypassVectors(t *testing.T, w *world) {
	w.enable()
	target := "192.0.2.2:25"
	var st struct {
		Limitations []string `json:"limitations"`
	}
	if err := json.Unmarshal([]byte(w.sgOK("status", "--json")), &st); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	limitations := strings.Join(st.Limitations, "\n")

	for _, v := range bypassVectors {
		t.Run(v.vector, func(t *testing.T) {
			w.t = t
			r := w.vector(t, v.vector, w.plain, target)
			if w.isBPF() {
				// The connecting process is the cgroup's, and the socket
				// too, except where the vector is about that.
				in := "/" + filepath.Base(w.cg.Path)
				wantCreator := in
				if v.vector == "fd-pass-outside" {
					wantCreator = ownCgroup()
				}
				if r.Cgroup != in || r.Creator != wantCreator {
					t.Errorf("vector %s connected in cgroup %q with a socket made in %q, want %q and %q", v.vector, r.Cgroup, r.Creator, in, wantCreator)
				}
			}
			if r.UIDInside != int(w.plain.UID) && !(v.vector == "seteuid" && r.EUIDInside == int(w.plain.UID)) {
				t.Errorf("the vector ran as uid %d euid %d, want %d (%s)", r.UIDInside, r.EUIDInside, w.plain.UID, w.plain.Name)
			}
			if gap, ok := v.gaps[w.backend]; ok {
				if !r.Connected {
					t.Errorf("%s as %s = %+v, want connected: the documented %s limitation (%s) no longer holds; update its Describe() and this table",
						v.vector, w.plain.Name, r, w.backend, v.why)
				}
				if !strings.Contains(limitations, gap) {
					t.Errorf("status limitations = %q, want the %q gap reported (%s)", st.Limitations, gap, v.why)
				}
			} else {
				if r.Connected || r.Errno != w.refusalErrno() {
					t.Errorf("%s as %s = %+v, want refused with %s (%s)", v.vector, w.plain.Name, r, w.refusalErrno(), v.why)
				}
				for _, gap := range v.gaps {
					if strings.Contains(limitations, gap) {
						t.Errorf("status limitations = %q report %q as a gap, but %s refuses it", st.Limitations, gap, w.backend)
					}
				}
			}
			if r := w.vector(t, v.vector, testutil.User{}, target); !r.Connected {
				t.Errorf("%s as root = %+v, want connected", v.vector, r)
			}
		})
	}
	t.Run("an unprivileged user namespace's root is still the user", func(t *testing.T) {
		w.t = t
		r := w.vector(t, "userns", w.plain, target,
			"setpriv", "--reuid", strconv.Itoa(int(w.plain.UID)), "--regid", strconv.Itoa(int(w.plain.GID)), "--clear-groups", "unshare", "-Ur")
		if r.UIDInside != 0 {
			t.Fatalf("uid inside the user namespace = %d, want 0 (the vector did not run as its root)", r.UIDInside)
		}
		if r.Connected || r.Errno != w.refusalErrno() {
			t.Errorf("root of an unprivileged user namespace = %+v, want %s: the kernel matches the host uid", r, w.refusalErrno())
		}
	})
	t.Run("a non-blocking connect is refused", func(t *testing.T) {
		w.t = t
		w.expectBlocked(&w.plain, target) // ConnectAs connects non-blocking and polls
	})
	t.Run("leaving an allowed group closes the door again", func(t *testing.T) {
		w.t = t
		w.sgOK("allow", "group", w.group)
		member := testutil.NewUser(t, "memb", "", w.group)
		w.enable() // without the daemon, re-applying re-resolves the group
		w.expectReach(&member, target)
		if out, err := exec.Command("gpasswd", "-d", member.Name, w.group).CombinedOutput(); err != nil {
			t.Fatalf("gpasswd -d: %v: %s", err, out)
		}
		w.enable() // without the daemon, re-applying re-resolves
		w.expectBlocked(&member, target)
	})
	t.Run("a process in another network namespace", func(t *testing.T) {
		// A "container" with its own network stack, routed through the host
		// (the client namespace), as Docker or LXC do. nft cannot see it:
		// its packets are forwarded, not sent from the output path. bpf
		// sees its connect() while it is in the cgroup.
		w.t = t
		const gap = "other network namespaces"
		container := testutil.NewNetNS(t)
		testutil.Veth(t, w.client, []string{"2001:db8:c::1/64"}, container, []string{"2001:db8:c::2/64"})
		w.client.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
		container.Exec(t, "ip", "-6", "route", "add", "default", "via", "2001:db8:c::1")
		w.server.Exec(t, "ip", "-6", "route", "add", "2001:db8:c::/64", "via", "2001:db8::1")
		r := w.connectIn(container, &w.plain, "[2001:db8::2]:25")[0]
		if w.isBPF() {
			if r.OK || r.Errno != w.refusalErrno() {
				t.Errorf("from another network namespace in the cgroup: %s, want %s", r, w.refusalErrno())
			}
			if strings.Contains(limitations, gap) {
				t.Errorf("status limitations = %q report %q, but bpf refuses it", st.Limitations, gap)
			}
			if r := w.connectIn(container, nil, "[2001:db8::2]:25")[0]; !r.OK {
				t.Errorf("root from the routed namespace: %s, want connected (the route works)", r)
			}
			return
		}
		if !r.OK {
			t.Fatalf("from another network namespace: %s; if nft now covers containers, update its Describe() and this test", r)
		}
		if !strings.Contains(limitations, gap) {
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
