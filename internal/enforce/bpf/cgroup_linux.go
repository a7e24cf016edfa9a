//go:build linux

package bpf

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// mountinfoPath is read to find the cgroup2 mount.
const mountinfoPath = "/proc/self/mountinfo"

// Cgroup2Mount is where the cgroup2 hierarchy is mounted: /sys/fs/cgroup on
// a unified host, /sys/fs/cgroup/unified on a hybrid one. It errors (wrapping
// enforce.ErrNotSupported) when there is none.
func Cgroup2Mount() (string, error) {
	data, err := os.ReadFile(mountinfoPath)
	if err != nil {
		return "", fmt.Errorf("find the cgroup2 mount: %w", err)
	}
	mp, ok := ParseCgroup2Mount(string(data))
	if !ok {
		return "", fmt.Errorf("no cgroup2 file system is mounted (see %s): %w", mountinfoPath, enforce.ErrNotSupported)
	}
	return mp, nil
}

// checkCgroup2 makes sure path is a directory of a cgroup2 file system.
func checkCgroup2(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("cgroup %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("%s is not a cgroup2 directory: give a directory under the cgroup2 mount", path)
	}
	return nil
}

// cgroupID is the kernel's id of the cgroup at path: on cgroup2 it is the
// directory's inode number, the value link info and bpf_get_current_cgroup_id
// report.
func cgroupID(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("cgroup %s: no inode number", path)
	}
	return st.Ino, nil
}
