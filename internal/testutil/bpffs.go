//go:build linux

package testutil

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// NewBPFFS mounts a bpf file system of the test's own in a temporary
// directory and returns its path. Each mount is a separate instance, so
// nothing another test or the host pinned is visible there; unmounting it at
// the end of the test drops whatever is still pinned. Tests that check a
// backend leaves no pins check before that.
func NewBPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a bpf file system at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpf file system %s: %v", dir, err)
		}
		os.Remove(dir)
	})
	return dir
}
