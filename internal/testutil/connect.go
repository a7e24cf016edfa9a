//go:build linux

package testutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv carries a ConnectAs request to the re-executed test binary.
const helperEnv = "SMTPGUARD_TESTUTIL_CONNECT"

// connectTimeout bounds every connect so no test can hang on a dropped SYN.
const connectTimeout = 3 * time.Second

// ConnectResult is the outcome of one connect().
type ConnectResult struct {
	Addr    string
	OK      bool
	Errno   string // "ECONNREFUSED", "ETIMEDOUT", ... or ""
	Err     string
	Elapsed time.Duration
	Banner  string
}

func (r ConnectResult) String() string {
	if r.OK {
		return fmt.Sprintf("%s: connected in %v", r.Addr, r.Elapsed)
	}
	return fmt.Sprintf("%s: %s (%s) after %v", r.Addr, r.Errno, r.Err, r.Elapsed)
}

type connectRequest struct {
	UID, GID uint32
	Groups   []uint32
	AsRoot   bool
	Addrs    []string
}

// MaybeRunHelper turns the test binary into the ConnectAs helper when it was
// started as one. TestMain of every package using ConnectAs calls it first.
func MaybeRunHelper() {
	req := os.Getenv(helperEnv)
	if req == "" {
		return
	}
	var r connectRequest
	if err := json.Unmarshal([]byte(req), &r); err != nil {
		fmt.Fprintln(os.Stderr, "bad helper request:", err)
		os.Exit(2)
	}
	if !r.AsRoot {
		// Go applies these to every thread of the process.
		groups := make([]int, len(r.Groups))
		for i, g := range r.Groups {
			groups[i] = int(g)
		}
		if err := syscall.Setgroups(groups); err != nil {
			fmt.Fprintln(os.Stderr, "setgroups:", err)
			os.Exit(2)
		}
		if err := syscall.Setgid(int(r.GID)); err != nil {
			fmt.Fprintln(os.Stderr, "setgid:", err)
			os.Exit(2)
		}
		if err := syscall.Setuid(int(r.UID)); err != nil {
			fmt.Fprintln(os.Stderr, "setuid:", err)
			os.Exit(2)
		}
	}
	results := make([]ConnectResult, 0, len(r.Addrs))
	for _, a := range r.Addrs {
		results = append(results, connectOnce(a))
	}
	json.NewEncoder(os.Stdout).Encode(results)
	os.Exit(0)
}

// ConnectAs connects to each address from inside ns as user u (nil: root),
// each with a raw blocking-style connect bounded by a timeout. An address
// "[::ffff:192.0.2.2]:25" is dialled on an AF_INET6 socket (IPv4-mapped).
func ConnectAs(t testing.TB, ns *NetNS, u *User, addrs ...string) []ConnectResult {
	t.Helper()
	req := connectRequest{AsRoot: u == nil, Addrs: addrs}
	if u != nil {
		req.UID, req.GID, req.Groups = u.UID, u.GID, u.Groups
	}
	body, _ := json.Marshal(req)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(body))
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("connect helper in %s: %v %s", ns.Name, err, stderr)
	}
	var results []ConnectResult
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("connect helper output %q: %v", out, err)
	}
	return results
}

func connectOnce(addr string) ConnectResult {
	res := ConnectResult{Addr: addr}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ap.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		res.Err = "socket: " + err.Error()
		return res
	}
	defer unix.Close(fd)
	start := time.Now()
	err = unix.Connect(fd, sa)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		res.Elapsed = time.Since(start)
		res.setErr(err)
		return res
	}
	if err != nil {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, perr := unix.Poll(pfd, int(connectTimeout/time.Millisecond))
		res.Elapsed = time.Since(start)
		if perr != nil {
			res.setErr(perr)
			return res
		}
		if n == 0 {
			res.setErr(unix.ETIMEDOUT)
			res.Err = "no answer within " + connectTimeout.String()
			return res
		}
		soErr, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if gerr != nil {
			res.setErr(gerr)
			return res
		}
		if soErr != 0 {
			res.setErr(unix.Errno(soErr))
			return res
		}
	} else {
		res.Elapsed = time.Since(start)
	}
	res.OK = true
	res.Banner = readBanner(fd)
	return res
}

func (r *ConnectResult) setErr(err error) {
	r.Err = err.Error()
	var errno unix.Errno
	if errors.As(err, &errno) {
		r.Errno = unix.ErrnoName(errno)
	}
}

// readBanner reads the greeting, bounded in time, to prove which server answered.
func readBanner(fd int) string {
	buf := make([]byte, 128)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			return string(buf[:n])
		}
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			return ""
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		unix.Poll(pfd, int(time.Until(deadline)/time.Millisecond)+1)
	}
	return ""
}

// HostPort joins an address and port the way ConnectAs expects.
func HostPort(addr string, port int) string {
	return net.JoinHostPort(addr, strconv.Itoa(port))
}
