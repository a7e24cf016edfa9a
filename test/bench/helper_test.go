//go:build linux

package bench

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
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// helperEnv carries a load request to the test binary re-executed inside the
// client namespace; the copy drops to the requested uid, runs one bounded
// loop and prints a helperResult as JSON.
const helperEnv = "SMTPGUARD_BENCH_HELPER"

// connectTimeout bounds one connect, so a dropped SYN cannot stall a loop.
const connectTimeout = time.Second

type helperRequest struct {
	Mode     string        // "connect": connect()+close in a loop; "stream": send bytes on one connection
	UID, GID uint32        // credentials the loop runs with
	Addr     string        // "192.0.2.2:25"
	Duration time.Duration // time bound of the loop
	MaxCount int           // count bound of the loop (connect mode)
	Timed    bool          // record the duration of each connect (connect mode)
}

type helperResult struct {
	Attempts int
	OK       int
	Refused  int // ECONNREFUSED, or EPERM (bpf where bpf_set_retval cannot choose the errno)
	Other    int // any other failure
	FirstErr string
	Elapsed  time.Duration
	Bytes    int64 // stream mode
	// CPU is the helper's own CPU time (user+sys, getrusage) over the
	// loop: the kernel's output path, netfilter included, runs in the
	// sender's context, so it is counted where a rate only shows wall time.
	CPU     time.Duration
	Samples []time.Duration `json:",omitempty"` // per-connect durations when Timed (at most maxSamples)
}

// maxSamples caps the per-connect durations a timed helper returns.
const maxSamples = 20000

// cpuPerAttempt is the CPU time of one loop iteration.
func (r helperResult) cpuPerAttempt() time.Duration {
	if r.Attempts == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Attempts)
}

// cpuTime is the process's user+sys CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Rate is attempts (or bytes) per second.
func (r helperResult) rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	n := float64(r.Attempts)
	if r.Bytes > 0 {
		n = float64(r.Bytes)
	}
	return n / r.Elapsed.Seconds()
}

// maybeRunHelper turns the test binary into a load helper when started as
// one, and exits; otherwise it returns at once.
func maybeRunHelper() {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		return
	}
	res, err := runHelper(raw)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench helper:", err)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		os.Exit(2)
	}
	os.Exit(0)
}

func runHelper(raw string) (helperResult, error) {
	var req helperRequest
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		return helperResult{}, fmt.Errorf("bad request: %w", err)
	}
	if err := testutil.DropPrivileges(req.UID, req.GID, nil); err != nil {
		return helperResult{}, err
	}
	switch req.Mode {
	case "connect":
		return connectLoop(req)
	case "stream":
		return streamLoop(req)
	}
	return helperResult{}, fmt.Errorf("unknown mode %q", req.Mode)
}

// connectLoop does socket, non-blocking connect, poll, close (with SO_LINGER
// 0, so no TIME_WAIT eats the ephemeral ports) until either bound is hit.
func connectLoop(req helperRequest) (helperResult, error) {
	ap, err := netip.ParseAddrPort(req.Addr)
	if err != nil || !ap.Addr().Is4() {
		return helperResult{}, fmt.Errorf("address %q: want an IPv4 ip:port", req.Addr)
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	var res helperResult
	if req.Timed {
		res.Samples = make([]time.Duration, 0, min(req.MaxCount, maxSamples))
	}
	cpu0 := cpuTime()
	start := time.Now()
	deadline := start.Add(req.Duration)
	for res.Attempts < req.MaxCount {
		if res.Attempts%32 == 0 && time.Now().After(deadline) {
			break
		}
		t0 := time.Now()
		err := connectOnce(sa)
		if req.Timed && len(res.Samples) < maxSamples {
			res.Samples = append(res.Samples, time.Since(t0))
		}
		res.Attempts++
		switch {
		case err == nil:
			res.OK++
		case errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.EPERM):
			res.Refused++
		default:
			res.Other++
			if res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.EACCES) {
				return res, err
			}
		}
	}
	res.Elapsed = time.Since(start)
	res.CPU = cpuTime() - cpu0
	return res, nil
}

func connectOnce(sa *unix.SockaddrInet4) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	err = unix.Connect(fd, sa)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINPROGRESS) {
		return err
	}
	deadline := time.Now().Add(connectTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return unix.ETIMEDOUT
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			break
		}
	}
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("SO_ERROR: %w", err)
	}
	if soErr != 0 {
		return unix.Errno(soErr)
	}
	return nil
}

// streamLoop sends as fast as it can on one connection for the duration.
func streamLoop(req helperRequest) (helperResult, error) {
	c, err := net.DialTimeout("tcp", req.Addr, connectTimeout)
	if err != nil {
		return helperResult{}, fmt.Errorf("dial %s: %w", req.Addr, err)
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	var res helperResult
	start := time.Now()
	c.SetWriteDeadline(start.Add(req.Duration + 5*time.Second))
	for time.Since(start) < req.Duration {
		n, err := c.Write(buf)
		res.Bytes += int64(n)
		if err != nil {
			return res, fmt.Errorf("write to %s: %w", req.Addr, err)
		}
	}
	res.Elapsed = time.Since(start)
	res.Attempts = 1
	return res, nil
}

// runLoad re-executes the test binary inside the namespace and the cgroup
// as a helper (GOMAXPROCS=1: the load uses one core) and returns its result.
func runLoad(ctx context.Context, cg *testutil.Cgroup, nsName string, req helperRequest) (helperResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return helperResult{}, err
	}
	exe, err := os.Executable()
	if err != nil {
		return helperResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, req.Duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nsName, exe)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, "GOMAXPROCS=") }),
		helperEnv+"="+string(body), "GOMAXPROCS=1")
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	var errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	// In the cgroup from its fork (CLONE_INTO_CGROUP): the helper it
	// execs inherits it, `ip netns exec` changes only namespaces.
	err = cg.Start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return helperResult{}, fmt.Errorf("load helper %s %s as uid %d in %s: %v: %s", req.Mode, req.Addr, req.UID, nsName, err, strings.TrimSpace(errOut.String()))
	}
	var res helperResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return helperResult{}, fmt.Errorf("load helper output %q: %w", out.Bytes(), err)
	}
	return res, nil
}
