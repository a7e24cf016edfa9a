package mta

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// hangupAndWait makes a daemon that re-executes itself on SIGHUP (Exim)
// read its configuration again, and returns once the new image serves: it
// listens on a TCP socket that did not exist before the signal (Exim closes
// its listening sockets before re-executing and binds them again after
// reading the configuration) and answers a connection there with an SMTP
// greeting. A daemon that exits instead is an error.
//
// One signal is not always enough. Exim only acts on SIGHUP in its main
// loop, woken by a connection or a child's exit; a signal that arrives while
// a freshly (re)started daemon still does its one-time start-up work (a
// self-signed certificate, the CA bundle: 0.1 s idle, seconds under load)
// sets a flag nobody looks at until the next connection. So while no new
// socket appears the daemon is signalled again every r.resignal, but only
// while it has a SIGHUP handler installed: a daemon between exec and its
// handler would ignore the signal at best. A daemon whose sockets cannot be
// seen gets one signal and a second to settle, as before.
func (r reloader) hangupAndWait(ctx context.Context, pid int) error {
	before := listeningSockets(r.procRoot, pid)
	if err := hangup(pid); err != nil {
		return fmt.Errorf("SIGHUP to pid %d: %w", pid, err)
	}
	start := time.Now()
	deadline := start.Add(r.timeout)
	settle := start.Add(time.Second) // for a daemon that listens nowhere
	lastSignal, signals := start, 1
	resignal := r.resignal
	if resignal <= 0 {
		resignal = 250 * time.Millisecond
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var lastGreet error
	for {
		if !processAlive(r.procRoot, pid) {
			return fmt.Errorf("daemon pid %d exited after SIGHUP instead of reloading", pid)
		}
		if len(before) == 0 && time.Now().After(settle) {
			return nil
		}
		var fresh []string
		for ino := range listeningSockets(r.procRoot, pid) {
			if !before[ino] {
				fresh = append(fresh, ino)
			}
		}
		if len(fresh) > 0 {
			// The new image has bound its sockets; it serves once it greets.
			if lastGreet = r.greets(ctx, pid, fresh, deadline); lastGreet == nil {
				return nil
			}
		} else if len(before) > 0 && time.Since(lastSignal) >= resignal && catchesHangup(r.procRoot, pid) {
			// Only a daemon seen listening before is signalled again: one
			// that listens nowhere, or whose sockets this process may not
			// see (no CAP_SYS_PTRACE for /proc/PID/fd), would be reloaded
			// every time.
			if err := hangup(pid); err != nil {
				return fmt.Errorf("SIGHUP to pid %d: %w", pid, err)
			}
			lastSignal, signals = time.Now(), signals+1
		}
		if time.Now().After(deadline) {
			if lastGreet != nil {
				return fmt.Errorf("daemon pid %d listens again but did not greet within %v after SIGHUP: %w", pid, r.timeout, lastGreet)
			}
			return fmt.Errorf("daemon pid %d did not listen again within %v after %d SIGHUP(s)", pid, r.timeout, signals)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// greets connects to one of the daemon's listening sockets (inodes) and
// reads the SMTP greeting. 220 is a greeting; 421 is one too: it is what a
// serving Exim says when the connection limit being set is already reached.
func (r reloader) greets(ctx context.Context, pid int, inodes []string, deadline time.Time) error {
	addr, err := listenAddress(r.procRoot, pid, inodes)
	if err != nil {
		return err
	}
	var line string
	err = inNetNS(r.procRoot, pid, func() error {
		d := net.Dialer{Deadline: deadline}
		c, err := d.DialContext(ctx, "tcp", addr.String())
		if err != nil {
			return err
		}
		defer c.Close()
		readBy := time.Now().Add(2 * time.Second)
		if deadline.Before(readBy) {
			readBy = deadline
		}
		c.SetReadDeadline(readBy)
		line, err = bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("reading the greeting from %s: %w", addr, err)
		}
		// Say goodbye so the session ends at once rather than by timeout.
		c.Write([]byte("QUIT\r\n"))
		return nil
	})
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "220") || strings.HasPrefix(line, "421") {
		return nil
	}
	return fmt.Errorf("%s greeted with %q", addr, strings.TrimSpace(line))
}

// listenAddress is an address to reach one of the listening sockets
// (inodes) of pid: its own address, or loopback for a wildcard one. IPv4
// comes first.
func listenAddress(procRoot string, pid int, inodes []string) (netip.AddrPort, error) {
	want := map[string]bool{}
	for _, ino := range inodes {
		want[ino] = true
	}
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "net", table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !want[f[9]] {
				continue
			}
			ap, err := parseProcAddr(f[1])
			if err != nil {
				continue
			}
			switch a := ap.Addr(); {
			case a == netip.IPv4Unspecified():
				ap = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port())
			case a == netip.IPv6Unspecified():
				ap = netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
			}
			return ap, nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no address found for the listening sockets of pid %d", pid)
}

// parseProcAddr parses /proc/net/tcp{,6}'s "0100007F:09C5": the address as
// 32-bit words in host byte order (little-endian here), the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(hexAddr)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// catchesHangup reports whether pid has a handler for SIGHUP installed
// (bit 1 of SigCgt in /proc/PID/status).
func catchesHangup(procRoot string, pid int) bool {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&1 != 0 // bit n-1 is signal n; SIGHUP is 1
		}
	}
	return false
}
