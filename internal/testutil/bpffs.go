//go:build linux

package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// kindBPFFS marks owner records of test bpf mounts, named by a hash of the
// mount point.
const kindBPFFS = "bpffs"

func bpffsRecord(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return hex.EncodeToString(sum[:8])
}

// NewBPFFS mounts a bpf file system of the test's own in a temporary
// directory and returns its path. Each mount is a separate instance, so
// nothing another test or the host pinned is visible there; unmounting it at
// the end of the test drops whatever is still pinned. Tests that check a
// backend leaves no pins check before that.
func NewBPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	rec := bpffsRecord(dir)
	if err := claim(kindBPFFS, rec); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		release(kindBPFFS, rec)
		t.Fatalf("mount a bpf file system at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpf file system %s: %v", dir, err)
			return
		}
		release(kindBPFFS, rec)
		os.Remove(dir)
	})
	return dir
}

// RemoveBPFFSLeftovers unmounts the bpf file systems NewBPFFS mounted under
// the temporary directory for a run that crashed or was killed (their pins,
// and the links in them, go with them), and keeps those of test binaries
// still running.
func RemoveBPFFSLeftovers() error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	tmp := filepath.Clean(os.TempDir()) + "/"
	var errs []error
	for line := range strings.Lines(string(data)) {
		pre, post, ok := strings.Cut(line, " - ")
		f, rest := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(rest) == 0 || rest[0] != "bpf" || !strings.HasPrefix(f[4], tmp+"Test") {
			continue
		}
		dir := f[4]
		rec := bpffsRecord(dir)
		if _, err := os.Stat(recordPath(kindBPFFS, rec)); err != nil || ownedByLiveProcess(kindBPFFS, rec) {
			continue // not ours, or its test still runs
		}
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("leftover bpf file system %s: %w", dir, err))
			continue
		}
		release(kindBPFFS, rec)
	}
	return errors.Join(errs...)
}
