//go:build linux

package bpf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// The test binary doubles as the process that connects from inside the test
// cgroup (and a client network namespace): helperEnv carries its request.
const helperEnv = "SMTPGUARD_BPF_TEST_HELPER"

// Helper modes.
const (
	// modeConnect drops to the uid (unless 0), then creates each socket and
	// connects it.
	helperConnect = "connect"
	// helperDropAfter creates the sockets as root, drops to the uid, then
	// connects them: a setuid drop after socket().
	helperDropAfter = "dropafter"
	// helperSendFD creates each socket as root and passes it over a Unix
	// socket to a child process that dropped to the uid and connects it.
	helperSendFD = "sendfd"
	helperRecvFD = "recvfd" // the child of helperSendFD
	// helperBurst drops to the uid, then makes Burst non-blocking connects
	// to Addrs[0] as fast as it can, each socket closed at once, and
	// counts the outcomes (ratelimit_privileged_test.go).
	helperBurst = "burst"
	// helperPidNSReader reads events in its own pid namespace and starts
	// connecting helpers there (pidns_privileged_test.go).
	helperPidNSReader = "pidnsreader"
)

type helperRequest struct {
	Mode  string
	UID   uint32
	GID   uint32
	Addrs []string
	// Kind is the socket and call: "" (TCP connect), "udp" (UDP connect),
	// "mptcp" (IPPROTO_MPTCP connect) or "fastopen" (sendto MSG_FASTOPEN).
	Kind string
	// Burst is how many connects helperBurst makes.
	Burst int
	// BPFFS, Cgroup and NetNS (a path) are helperPidNSReader's world.
	BPFFS, Cgroup, NetNS string
	// Unpinned: sg_pidns is not pinned (helperPidNSReader does not wait
	// for it). EarlierPort: helperPidNSReader also reports the event of an
	// attempt to this port made before it started.
	Unpinned    bool
	EarlierPort uint16
}

// The socket kinds of helperRequest.Kind.
const (
	kindUDP      = "udp"
	kindMPTCP    = "mptcp"
	kindFastOpen = "fastopen"
)

type helperResult struct {
	PID     int
	Results []connResult
	// Outcomes counts helperBurst's connects by errno ("EINPROGRESS": let
	// through).
	Outcomes map[string]int
	// Seen is what helperPidNSReader saw.
	Seen []pidNSSeen
}

type connResult struct {
	Addr   string
	OK     bool
	Errno  string
	Err    string
	Banner string
}

func (r connResult) String() string {
	if r.OK {
		return fmt.Sprintf("%s: connected, banner %q", r.Addr, r.Banner)
	}
	return fmt.Sprintf("%s: %s (%s)", r.Addr, r.Errno, r.Err)
}

// maybeRunHelper runs the helper and exits when the binary was started as one.
func maybeRunHelper() {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		return
	}
	var req helperRequest
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	res, err := runHelper(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

func runHelper(req helperRequest) (helperResult, error) {
	res := helperResult{PID: os.Getpid()}
	drop := func() error {
		if req.UID == 0 {
			return nil
		}
		return testutil.DropPrivileges(req.UID, req.GID, nil)
	}
	switch req.Mode {
	case helperConnect:
		if err := drop(); err != nil {
			return res, err
		}
		for _, a := range req.Addrs {
			fd, r := newSocketKind(a, req.Kind)
			if fd >= 0 {
				switch req.Kind {
				case kindUDP:
					r = connectUDP(fd, a)
				case kindFastOpen:
					r = fastOpen(fd, a)
				default:
					r = connectFD(fd, a)
				}
				unix.Close(fd)
			}
			res.Results = append(res.Results, r)
		}
	case helperDropAfter:
		fds := make([]int, len(req.Addrs))
		for i, a := range req.Addrs {
			var r connResult
			if fds[i], r = newSocket(a); fds[i] < 0 {
				return res, errors.New(r.Err)
			}
		}
		if err := drop(); err != nil {
			return res, err
		}
		for i, a := range req.Addrs {
			res.Results = append(res.Results, connectFD(fds[i], a))
			unix.Close(fds[i])
		}
	case helperBurst:
		if err := drop(); err != nil {
			return res, err
		}
		res.Outcomes = burst(req.Addrs[0], req.Burst)
	case helperSendFD:
		for _, a := range req.Addrs {
			r, err := sendFD(req, a)
			if err != nil {
				return res, err
			}
			res.Results = append(res.Results, r)
		}
	case helperPidNSReader:
		seen, err := runPidNSReader(req)
		res.Seen = seen
		return res, err
	case helperRecvFD:
		if err := drop(); err != nil {
			return res, err
		}
		conn := os.NewFile(3, "unix")
		buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := unix.Recvmsg(int(conn.Fd()), buf, oob, 0)
		if err != nil {
			return res, fmt.Errorf("recvmsg: %w", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return res, fmt.Errorf("control message: %v", err)
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			return res, fmt.Errorf("unix rights: %v", err)
		}
		res.Results = append(res.Results, connectFD(fds[0], req.Addrs[0]))
	default:
		return res, fmt.Errorf("unknown mode %q", req.Mode)
	}
	return res, nil
}

// sendFD creates a socket for addr as root and hands it to a child (the
// same binary in helperRecvFD mode) over a Unix socket pair.
func sendFD(req helperRequest, addr string) (connResult, error) {
	fd, r := newSocket(addr)
	if fd < 0 {
		return r, errors.New(r.Err)
	}
	defer unix.Close(fd)
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return r, err
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "ours"), os.NewFile(uintptr(pair[1]), "theirs")
	defer ours.Close()
	exe, err := os.Executable()
	if err != nil {
		return r, err
	}
	child := helperRequest{Mode: helperRecvFD, UID: req.UID, GID: req.GID, Addrs: []string{addr}}
	body, _ := json.Marshal(child)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(body))
	cmd.ExtraFiles = []*os.File{theirs}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		theirs.Close()
		return r, err
	}
	theirs.Close()
	if err := unix.Sendmsg(int(ours.Fd()), []byte{0}, unix.UnixRights(fd), nil, 0); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return r, fmt.Errorf("sendmsg: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return r, fmt.Errorf("fd receiver: %v: %s", err, out.String())
	}
	var got helperResult
	if err := json.Unmarshal(lastLine(out.Bytes()), &got); err != nil || len(got.Results) != 1 {
		return r, fmt.Errorf("fd receiver output %q: %v", out.String(), err)
	}
	return got.Results[0], nil
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// newSocket makes a non-blocking TCP socket for addr's family; IPv4-mapped
// addresses get a dual-stack AF_INET6 socket.
func newSocket(addr string) (int, connResult) { return newSocketKind(addr, "") }

func newSocketKind(addr, kind string) (int, connResult) {
	r := connResult{Addr: addr}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		r.Err = err.Error()
		return -1, r
	}
	family := unix.AF_INET6
	if ap.Addr().Is4() {
		family = unix.AF_INET
	}
	typ, proto := unix.SOCK_STREAM, 0
	switch kind {
	case kindUDP:
		typ = unix.SOCK_DGRAM
	case kindMPTCP:
		proto = unix.IPPROTO_MPTCP
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		r.Err = "socket: " + err.Error()
		return -1, r
	}
	if family == unix.AF_INET6 {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	return fd, r
}

// connectFD connects fd to addr, bounded by testutil.ConnectTimeout, and reads
// the banner.
func connectFD(fd int, addr string) connResult {
	r := connResult{Addr: addr}
	ap := netip.MustParseAddrPort(addr)
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	if ap.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	setErr := func(op string, err error) connResult {
		r.Err = op + ": " + err.Error()
		var errno unix.Errno
		if errors.As(err, &errno) {
			r.Errno = unix.ErrnoName(errno)
		}
		return r
	}
	err := unix.Connect(fd, sa)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return setErr("connect", err)
	}
	deadline := time.Now().Add(testutil.ConnectTimeout)
	if err != nil {
		if !waitFD(fd, unix.POLLOUT, deadline) {
			r.Errno, r.Err = "ETIMEDOUT", "no answer"
			return r
		}
		if soErr, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); soErr != 0 {
			return setErr("connect", unix.Errno(soErr))
		}
	}
	r.OK = true
	buf := make([]byte, 256)
	deadline = time.Now().Add(time.Second)
	for waitFD(fd, unix.POLLIN, deadline) {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if n > 0 {
			r.Banner = string(buf[:n])
		}
		break
	}
	return r
}

func sockaddrOf(addr string) unix.Sockaddr {
	ap := netip.MustParseAddrPort(addr)
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// connectUDP connects a UDP socket (no packet is sent).
func connectUDP(fd int, addr string) connResult {
	r := connResult{Addr: addr, OK: true}
	if err := unix.Connect(fd, sockaddrOf(addr)); err != nil {
		r.OK, r.Err, r.Errno = false, err.Error(), errnoName(err)
	}
	return r
}

// fastOpen connects with sendto(MSG_FASTOPEN), the connect() that carries
// data, then waits for the handshake.
func fastOpen(fd int, addr string) connResult {
	r := connResult{Addr: addr}
	err := unix.Sendto(fd, []byte("EHLO x\r\n"), unix.MSG_FASTOPEN, sockaddrOf(addr))
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		r.Err, r.Errno = "sendto MSG_FASTOPEN: "+err.Error(), errnoName(err)
		return r
	}
	if !waitFD(fd, unix.POLLOUT, time.Now().Add(testutil.ConnectTimeout)) {
		r.Errno, r.Err = "ETIMEDOUT", "no answer"
		return r
	}
	if soErr, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); soErr != 0 {
		r.Err, r.Errno = unix.Errno(soErr).Error(), unix.ErrnoName(unix.Errno(soErr))
		return r
	}
	r.OK = true
	return r
}

func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return ""
}

func waitFD(fd int, events int16, deadline time.Time) bool {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0
	}
}

// runIn starts the helper inside cg and network namespace ns and returns its
// results.
func runIn(t *testing.T, cg *testutil.Cgroup, ns *testutil.NetNS, req helperRequest) helperResult {
	t.Helper()
	return startIn(t, cg, ns, req)()
}

// startIn starts the helper in cg and ns and returns a function that waits
// for it (bounded) and returns its results; both run on the test goroutine.
func startIn(t *testing.T, cg *testutil.Cgroup, ns *testutil.NetNS, req helperRequest) func() helperResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(req)
	cmd := cg.NetCommand(ns, exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(body))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cg.Start(cmd); err != nil {
		t.Fatalf("start helper in cgroup %s: %v", cg.Path, err)
	}
	proc := testutil.Watch(cmd)
	t.Cleanup(proc.Kill)
	return func() helperResult {
		t.Helper()
		bound := time.Duration(len(req.Addrs))*(testutil.ConnectTimeout+2*time.Second) + 30*time.Second
		select {
		case <-proc.Done():
		case <-time.After(bound):
			proc.Kill()
			t.Fatalf("helper still running after %v", bound)
		}
		if !cmd.ProcessState.Success() {
			t.Fatalf("helper %s: %v\n%s", req.Mode, cmd.ProcessState, stderr.String())
		}
		var res helperResult
		if err := json.Unmarshal(lastLine(stdout.Bytes()), &res); err != nil {
			t.Fatalf("helper output %q: %v\n%s", stdout.String(), err, stderr.String())
		}
		// A burst reports counts, not a result per address.
		if req.Mode != helperBurst && len(res.Results) != len(req.Addrs) {
			t.Fatalf("helper returned %d results for %d addresses", len(res.Results), len(req.Addrs))
		}
		return res
	}
}

func hostPort(addr string, port int) string {
	ap := netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port))
	return ap.String()
}

var _ = strconv.Itoa
