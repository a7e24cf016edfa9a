//go:build linux

package remote

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// dialAs connects to socket from a thread whose effective uid is uid. Only
// that thread changes credentials (a raw setresuid, not Go's process-wide
// one); the goroutine never unlocks it, so the runtime discards the thread.
func dialAs(t *testing.T, socket string, uid uint32) net.Conn {
	t.Helper()
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); errno != 0 {
			ch <- result{err: errno}
			return
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: socket}); err != nil {
			unix.Close(fd)
			ch <- result{err: err}
			return
		}
		f := os.NewFile(uintptr(fd), "peer")
		conn, err := net.FileConn(f)
		f.Close()
		ch <- result{conn, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("connect to %s as uid %d: %v", socket, uid, r.err)
	}
	t.Cleanup(func() { r.conn.Close() })
	return r.conn
}

// TestPrivilegedNonRootPeerIsRefused opens the socket's permissions, as a
// careless chmod would, and shows that the peer check still refuses a
// non-root caller before it reaches the backend.
func TestPrivilegedNonRootPeerIsRefused(t *testing.T) {
	testutil.Privileged(t)
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := fake.New("nft")
	path := filepath.Join(dir, SocketFile)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &Server{Backends: []enforce.Backend{f}}
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}

	const nobody = 65534
	conn := dialAs(t, path, nobody)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewEncoder(conn).Encode(request{Op: opRemove, Backend: "nft"}); err != nil {
		t.Fatal(err)
	}
	var resp response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Error, "uid 65534 may not use") || !strings.Contains(resp.Error, "only root") {
		t.Errorf("answer to uid %d = %+v, want a refusal naming the uid and saying only root may", nobody, resp)
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("a non-root request reached the backend: %v", calls)
	}

	// Root, on the same socket, is served: the refusal was about the peer.
	conn = dialAs(t, path, 0)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	json.NewEncoder(conn).Encode(request{Op: opRemove, Backend: "nft"})
	resp = response{}
	if err := json.NewDecoder(conn).Decode(&resp); err != nil || resp.Error != "" {
		t.Errorf("root's request: %+v, %v; want success", resp, err)
	}
}
