package daemon

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// notifySocket is a stand-in for systemd's notification socket: it
// collects the datagrams the daemon sends.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
}

func newNotifySocket(t *testing.T, watchdog time.Duration) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
		t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	}
	s := &notifySocket{conn: conn, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(s.msgs)
				return
			}
			s.msgs <- string(buf[:n])
		}
	}()
	return s
}

// next returns the next message, failing after timeout.
func (s *notifySocket) next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(timeout):
		t.Fatalf("no notification within %v", timeout)
		return ""
	}
}

// quiet reports whether no WATCHDOG=1 arrives for d.
func (s *notifySocket) quiet(d time.Duration) (bool, string) {
	deadline := time.After(d)
	for {
		select {
		case m := <-s.msgs:
			if strings.Contains(m, "WATCHDOG=1") {
				return false, m
			}
		case <-deadline:
			return true, ""
		}
	}
}

func TestServiceNotifierWithoutSystemdIsNil(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := NewServiceNotifier(nil)
	if n != nil || err != nil {
		t.Fatalf("NewServiceNotifier() = %v, %v; want nil, nil outside systemd", n, err)
	}
	// Every hook is safe on nil.
	n.ready(nil)
	n.alive()
	if tick, stop := n.heartbeat(); tick != nil {
		t.Error("heartbeat() of a nil notifier ticks")
	} else {
		stop()
	}
}

// The daemon says READY=1 once it has converged, then feeds the watchdog
// from the reconcile loop; when the loop hangs (here: in a kernel call that
// does not return) the pings stop, so systemd would restart it; when the
// loop moves again, they resume.
func TestDaemonNotifiesSystemdAndFeedsWatchdogFromReconcileLoop(t *testing.T) {
	const watchdog = 300 * time.Millisecond
	sock := newNotifySocket(t, watchdog)
	f := newFixture(t)
	if _, err := f.eng.Enable(context.Background(), admin, "fake"); err != nil {
		t.Fatal(err)
	}
	f.backend.Tamper(nil)
	n, err := NewServiceNotifier(nil)
	if err != nil || n == nil {
		t.Fatalf("NewServiceNotifier() = %v, %v", n, err)
	}
	f.start(t, Config{Service: n})

	first := sock.next(t, 5*time.Second)
	if !strings.HasPrefix(first, "READY=1\n") || !strings.Contains(first, "STATUS=kernel rules converged") {
		t.Fatalf("first notification = %q, want READY=1 with a converged status", first)
	}
	if f.backend.Installed() == nil {
		t.Fatal("READY=1 sent before the kernel rules were installed")
	}
	for range 3 { // every watchdog/3 when idle; generous bounds for a loaded machine
		if m := sock.next(t, 5*time.Second); m != "WATCHDOG=1" {
			t.Fatalf("notification = %q, want WATCHDOG=1", m)
		}
	}

	// Wedge the loop: its next verify hangs.
	release := f.backend.Hang()
	defer release()
	f.backend.Tamper(nil)
	// Pings already on their way may still come; then silence for longer
	// than the watchdog timeout, which is what makes systemd act.
	silent := false
	for range 5 {
		if ok, _ := sock.quiet(2 * watchdog); ok {
			silent = true
			break
		}
	}
	if !silent {
		t.Fatalf("watchdog still fed while the reconcile loop is stuck")
	}

	release()
	if m := sock.next(t, 5*time.Second); m != "WATCHDOG=1" {
		t.Fatalf("after the loop moved again: notification = %q, want WATCHDOG=1", m)
	}
	waitFor(t, "rules repaired after the loop moved again", func() bool { return f.backend.Installed() != nil })
}
