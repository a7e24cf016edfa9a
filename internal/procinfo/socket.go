//go:build linux

package procinfo

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// SocketPID finds a process that holds the socket with this inode among its
// open files (/proc/PID/fd/N links to "socket:[INODE]"). Processes of uid
// are searched first, since the socket's uid is its creator's; the rest
// after, for a process that changed uid since. It stops when ctx ends: on a
// host with many processes this reads every one's fd directory.
func (r Reader) SocketPID(ctx context.Context, inode uint32, uid uint32) (uint32, bool) {
	root := r.Root
	if root == "" {
		root = DefaultRoot
	}
	d, err := os.Open(root)
	if err != nil {
		return 0, false
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, false
	}
	want := "socket:[" + strconv.FormatUint(uint64(inode), 10) + "]"
	var others []uint32
	for _, name := range names {
		pid, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(filepath.Join(root, name)); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uid {
				others = append(others, uint32(pid))
				continue
			}
		}
		if ctx.Err() != nil {
			return 0, false
		}
		if holds(root, uint32(pid), want) {
			return uint32(pid), true
		}
	}
	for _, pid := range others {
		if ctx.Err() != nil {
			return 0, false
		}
		if holds(root, pid, want) {
			return pid, true
		}
	}
	return 0, false
}

// holds reports whether process pid has an open file linking to target.
func holds(root string, pid uint32, target string) bool {
	dir := filepath.Join(root, strconv.FormatUint(uint64(pid), 10), "fd")
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	fds, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd)); err == nil && l == target {
			return true
		}
	}
	return false
}
