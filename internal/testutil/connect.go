//go:build linux

package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv carries a ConnectAs request to the re-executed test binary.
const helperEnv = "SMTPGUARD_TESTUTIL_CONNECT"

// ConnectTimeout bounds every connect, so no test hangs on a dropped SYN.
const ConnectTimeout = 3 * time.Second

// bannerTimeout bounds reading the greeting after a successful connect.
const bannerTimeout = time.Second

// ConnectResult is the outcome of one connect().
type ConnectResult struct {
	Addr    string
	OK      bool
	Errno   string // "ECONNREFUSED", "ETIMEDOUT", ... or "" when OK or not a syscall error
	Err     string
	Elapsed time.Duration // from connect() until it succeeded or failed
	Banner  string        // what the server sent first, when OK
}

func (r ConnectResult) String() string {
	if r.OK {
		return fmt.Sprintf("%s: connected in %v, banner %q", r.Addr, r.Elapsed, r.Banner)
	}
	return fmt.Sprintf("%s: %s (%s) after %v", r.Addr, r.Errno, r.Err, r.Elapsed)
}

type connectRequest struct {
	AsRoot bool
	UID    uint32
	GID    uint32
	Groups []uint32
	Addrs  []string
}

// MaybeRunHelper turns the test binary into the ConnectAs helper when
// ConnectAs started it as one, and exits; otherwise it returns at once. Call
// it first thing in TestMain of every package that uses ConnectAs.
func MaybeRunHelper() {
	req := os.Getenv(helperEnv)
	if req == "" {
		return
	}
	results, err := runHelper(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect helper:", err)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		os.Exit(2)
	}
	os.Exit(0)
}

func runHelper(reqJSON string) ([]ConnectResult, error) {
	var req connectRequest
	if err := json.Unmarshal([]byte(reqJSON), &req); err != nil {
		return nil, fmt.Errorf("bad request: %w", err)
	}
	if !req.AsRoot {
		if err := DropPrivileges(req.UID, req.GID, req.Groups); err != nil {
			return nil, err
		}
	}
	results := make([]ConnectResult, 0, len(req.Addrs))
	for _, a := range req.Addrs {
		results = append(results, connectOnce(a))
	}
	return results, nil
}

// DropPrivileges switches every thread of the process to uid, gid and the
// supplementary groups (Go applies set*id to all threads), then checks that
// the kernel agrees. Helper processes of tests use it to act as a test user.
func DropPrivileges(uid, gid uint32, groups []uint32) error {
	gs := make([]int, len(groups))
	for i, g := range groups {
		gs[i] = int(g)
	}
	if err := syscall.Setgroups(gs); err != nil {
		return fmt.Errorf("setgroups %v: %w", groups, err)
	}
	if err := syscall.Setgid(int(gid)); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(int(uid)); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	got, err := unix.Getgroups()
	if err != nil {
		return fmt.Errorf("getgroups: %w", err)
	}
	slices.Sort(got)
	slices.Sort(gs)
	if unix.Getuid() != int(uid) || unix.Geteuid() != int(uid) || unix.Getgid() != int(gid) ||
		unix.Getegid() != int(gid) || !slices.Equal(got, gs) {
		return fmt.Errorf("credentials after dropping privileges: uid %d/%d gid %d/%d groups %v, want uid %d gid %d groups %v",
			unix.Getuid(), unix.Geteuid(), unix.Getgid(), unix.Getegid(), got, uid, gid, gs)
	}
	return nil
}

// ConnectAs connects to each address from inside ns as user u (nil: root,
// with root's groups), one after the other, and returns one result per
// address. Each connect is a raw connect(2) bounded by ConnectTimeout, so
// Errno is exactly what the kernel returned. "192.0.2.2:25" uses an AF_INET
// socket, "[2001:db8::2]:25" and the IPv4-mapped "[::ffff:192.0.2.2]:25" an
// AF_INET6 one. Hostnames are not resolved.
//
// It re-executes the test binary inside ns (ip netns exec), as root; that
// copy sets the user's groups, gid and uid before connecting. The test fails
// if the helper cannot run: TestMain must call MaybeRunHelper.
func ConnectAs(t testing.TB, ns *NetNS, u *User, addrs ...string) []ConnectResult {
	t.Helper()
	req := connectRequest{AsRoot: u == nil, Addrs: addrs}
	if u != nil {
		req.UID, req.GID, req.Groups = u.UID, u.GID, u.Groups
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	results, err := callHelper(req, "ip", "netns", "exec", ns.Name, exe)
	if err != nil {
		t.Fatalf("connect as %s in network namespace %s: %v", userName(u), ns.Name, err)
	}
	return results
}

func userName(u *User) string {
	if u == nil {
		return "root"
	}
	return fmt.Sprintf("%s (uid %d)", u.Name, u.UID)
}

// callHelper starts argv as the helper, bounded in time, and decodes its
// results.
func callHelper(req connectRequest, argv ...string) ([]ConnectResult, error) {
	return callHelperWith(req, (*exec.Cmd).Start, argv...)
}

// callHelperWith is callHelper starting the command with start (a cgroup's
// Start puts it in the cgroup).
func callHelperWith(req connectRequest, start func(*exec.Cmd) error, argv ...string) ([]ConnectResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	bound := time.Duration(len(req.Addrs))*(ConnectTimeout+bannerTimeout) + 30*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(body))
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("helper still running after %v: %w", bound, ctx.Err())
		}
		return nil, fmt.Errorf("%v\n%s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	// The results are the last line; anything a package init printed before is skipped.
	out := bytes.TrimSpace(stdout.Bytes())
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	var results []ConnectResult
	if err := json.Unmarshal(out, &results); err != nil {
		return nil, fmt.Errorf("helper output %q (did TestMain call testutil.MaybeRunHelper?): %v", stdout.String(), err)
	}
	if len(results) != len(req.Addrs) {
		return nil, fmt.Errorf("helper returned %d results for %d addresses", len(results), len(req.Addrs))
	}
	return results, nil
}

// sockaddr turns "ip:port" into a socket family and address. An IPv4-mapped
// IPv6 address stays IPv6, to be dialled on an AF_INET6 socket.
func sockaddr(addr string) (int, unix.Sockaddr, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, nil, err
	}
	ip := ap.Addr()
	if ip.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
	if zone := ip.Zone(); zone != "" {
		ifi, err := net.InterfaceByName(zone)
		if err != nil {
			return 0, nil, fmt.Errorf("zone of %s: %w", addr, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return unix.AF_INET6, sa, nil
}

// connectOnce does one non-blocking connect and waits for it with poll, so
// the outcome and errno are exactly what a blocking connect would give,
// within ConnectTimeout.
func connectOnce(addr string) ConnectResult {
	res := ConnectResult{Addr: addr}
	family, sa, err := sockaddr(addr)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		res.setErr("socket", err)
		return res
	}
	defer unix.Close(fd)
	if family == unix.AF_INET6 {
		// IPv4-mapped destinations must work whatever net.ipv6.bindv6only says.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			res.setErr("IPV6_V6ONLY", err)
			return res
		}
	}
	start := time.Now()
	err = unix.Connect(fd, sa)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		res.Elapsed = time.Since(start)
		res.setErr("connect", err)
		return res
	}
	if err != nil { // in progress
		ready, perr := pollFd(fd, unix.POLLOUT, ConnectTimeout)
		res.Elapsed = time.Since(start)
		if perr != nil {
			res.setErr("poll", perr)
			return res
		}
		if !ready {
			res.Errno = "ETIMEDOUT"
			res.Err = "no answer within " + ConnectTimeout.String()
			return res
		}
		soErr, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if gerr != nil {
			res.setErr("SO_ERROR", gerr)
			return res
		}
		if soErr != 0 {
			res.setErr("connect", unix.Errno(soErr))
			return res
		}
	} else {
		res.Elapsed = time.Since(start)
	}
	res.OK = true
	res.Banner = readBanner(fd)
	return res
}

func (r *ConnectResult) setErr(op string, err error) {
	r.Err = op + ": " + err.Error()
	var errno unix.Errno
	if errors.As(err, &errno) {
		r.Errno = unix.ErrnoName(errno)
	}
}

// pollFd waits until fd has one of events, up to timeout; EINTR (the Go
// runtime's preemption signals) restarts the wait with the time left.
func pollFd(fd int, events int16, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, int((left+time.Millisecond-1)/time.Millisecond))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return false, err
		case n > 0:
			return true, nil
		}
	}
}

// readBanner reads the greeting, up to a line or 512 bytes, bounded in time.
func readBanner(fd int) string {
	var got []byte
	buf := make([]byte, 512)
	deadline := time.Now().Add(bannerTimeout)
	for len(got) < len(buf) && !bytes.Contains(got, []byte("\n")) {
		ready, err := pollFd(fd, unix.POLLIN, time.Until(deadline))
		if err != nil || !ready {
			break
		}
		n, err := unix.Read(fd, buf[:len(buf)-len(got)])
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n <= 0 { // error or EOF
			break
		}
		got = append(got, buf[:n]...)
	}
	return string(got)
}

// HostPort joins an address and port the way ConnectAs and ListenTCP expect.
func HostPort(addr string, port int) string {
	return net.JoinHostPort(addr, strconv.Itoa(port))
}
