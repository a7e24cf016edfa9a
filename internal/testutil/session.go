//go:build linux

package testutil

import (
	"errors"
	"net"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// HoldTCP listens on addr inside ns and keeps every accepted connection open,
// sending nothing, until the test ends: a server for sessions a test opens
// before changing the rules.
func HoldTCP(t testing.TB, ns *NetNS, addr string) {
	t.Helper()
	var mu sync.Mutex // protects conns
	var conns []net.Conn
	// Registered before acceptTCP's own cleanup, so it runs after the
	// listener has stopped accepting.
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	acceptTCP(t, ns, addr, func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	})
}

// Session is a TCP connection a test holds open, owned by a chosen uid.
type Session struct {
	Addr  string
	UID   uint32
	fd    int
	ended bool // the kernel reported it ended; it reports that only once
}

// OpenSession connects to addr ("192.0.2.2:25", "[2001:db8::2]:25") from
// inside ns with a socket owned by uid, as if that user's program had opened
// it: the socket is created while the thread's filesystem uid is uid, which
// is the owner the kernel records (sk_uid) and that rules and sock_diag see.
// The connection is closed when the test ends.
func OpenSession(t testing.TB, ns *NetNS, uid uint32, addr string) *Session {
	t.Helper()
	family, sa, err := sockaddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Session{Addr: addr, UID: uid, fd: -1}
	err = ns.Do(func() error {
		// setfsuid changes only this locked thread; Do's goroutine ends
		// after fn, and we switch back before that anyway.
		unix.Setfsuid(int(uid))
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		unix.Setfsuid(0)
		if err != nil {
			return err
		}
		tv := unix.NsecToTimeval(ConnectTimeout.Nanoseconds())
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			return err
		}
		s.fd = fd
		return nil
	})
	if err != nil {
		t.Fatalf("open a session to %s as uid %d in network namespace %s: %v", addr, uid, ns.Name, err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

// Ended reports whether the kernel has ended the connection (a read fails
// with ECONNABORTED or ECONNRESET) rather than keeping it open with nothing
// to read yet. It does not wait.
func (s *Session) Ended(t testing.TB) bool {
	t.Helper()
	if s.ended {
		return true
	}
	var buf [1]byte
	n, _, err := unix.Recvfrom(s.fd, buf[:], unix.MSG_DONTWAIT|unix.MSG_PEEK)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return false
	case errors.Is(err, unix.ECONNABORTED), errors.Is(err, unix.ECONNRESET):
		s.ended = true
		return true
	case err == nil && n == 0:
		t.Fatalf("session to %s as uid %d: the server closed it", s.Addr, s.UID)
	case err != nil:
		t.Fatalf("session to %s as uid %d: read: %v", s.Addr, s.UID, err)
	}
	t.Fatalf("session to %s as uid %d: the server sent data", s.Addr, s.UID)
	return false
}
