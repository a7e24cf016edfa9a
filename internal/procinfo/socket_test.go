//go:build linux

package procinfo

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// SocketPID finds the process whose fd links to the socket, whoever owns
// the process directory.
func TestSocketPID(t *testing.T) {
	root := t.TempDir()
	fd := func(pid, n, target string) {
		t.Helper()
		dir := filepath.Join(root, pid, "fd")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	fd("100", "0", "/dev/null")
	fd("100", "3", "socket:[5555]")
	fd("200", "0", "/dev/null")
	fd("200", "4", "socket:[12345]")
	fd("200", "5", "pipe:[12345]")
	os.MkdirAll(filepath.Join(root, "self"), 0o755) // not a pid
	r := Reader{Root: root}
	uid := uint32(os.Getuid())
	for _, tt := range []struct {
		inode   uint32
		uid     uint32
		wantPID uint32
		wantOK  bool
	}{
		{12345, uid, 200, true},
		{5555, uid, 100, true},
		{12345, uid + 1, 200, true}, // another uid's process is searched too, last
		{777, uid, 0, false},
	} {
		pid, ok := r.SocketPID(context.Background(), tt.inode, tt.uid)
		if pid != tt.wantPID || ok != tt.wantOK {
			t.Errorf("SocketPID(%d, uid %d) = %d, %v; want %d, %v", tt.inode, tt.uid, pid, ok, tt.wantPID, tt.wantOK)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := r.SocketPID(ctx, 12345, uid); ok {
		t.Error("SocketPID searched on after its context ended")
	}
}
