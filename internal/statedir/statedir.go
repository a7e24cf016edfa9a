// Package statedir decides whether smtpguard may trust its state directory
// before it reads a policy from it or writes anything into it as root.
//
// The directory decides what root enforces: whoever can write into it can
// swap in a database that allows themselves, or plant a symbolic link named
// like a state file so that root truncates or overwrites whatever it points
// to. So the directory, its ancestors and its entries must be owned by root
// (or by the effective uid running smtpguard, for unprivileged tests) and not
// writable by anyone else, and state files are opened without following
// symbolic links. Once the directory is trusted nobody else can change its
// entries, which closes the gap between a check and the open that follows it.
package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/atomicfile"
)

// isStateFile reports whether name is a file smtpguard keeps in the state
// directory and opens by name (the database and SQLite's companions, the
// lock, the web UI's self-signed certificate). Each must be a regular file:
// a symbolic link would make root follow it to a file someone else chose.
func isStateFile(name string) bool {
	switch name {
	case "smtpguard.db", "smtpguard.db-wal", "smtpguard.db-shm", "smtpguard.db-journal",
		"lock", "web-cert.pem", "web-key.pem":
		return true
	}
	return false
}

// Check verifies that dir may be trusted: dir (after resolving symbolic
// links in its path) and each of its ancestors is owned by root or by this
// process's effective uid, and none is writable by group or others (an
// ancestor with the sticky bit, like /tmp, may be); every entry of dir is
// owned by root or the effective uid, and none but sockets is writable by
// group or others; the state files are regular files. The error
// names the offending path and the command that fixes it.
//
// It returns dir with every symbolic link in its path resolved: use that path
// from then on, so that a link in the path cannot be repointed after the
// check.
func Check(dir string) (string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("state directory %s: %w", dir, err)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return "", fmt.Errorf("state directory %s: %w", dir, err)
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return "", fmt.Errorf("state directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("state directory %s is not a directory", dir)
	}
	if err := trusted(real, fi, false); err != nil {
		return "", err
	}
	for p := filepath.Dir(real); ; p = filepath.Dir(p) {
		pfi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("state directory %s: parent %s: %w", dir, p, err)
		}
		if err := trusted(p, pfi, true); err != nil {
			return "", fmt.Errorf("state directory %s: %w", dir, err)
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	entries, err := os.ReadDir(real)
	if errors.Is(err, fs.ErrPermission) {
		return "", fmt.Errorf("read state directory %s: %w (needs root: run with sudo)", dir, err)
	}
	if err != nil {
		return "", fmt.Errorf("read state directory %s: %w", dir, err)
	}
	for _, ent := range entries {
		path := filepath.Join(real, ent.Name())
		efi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile (a WAL file at close)
		}
		if err != nil {
			return "", fmt.Errorf("state file %s: %w", path, err)
		}
		if isStateFile(ent.Name()) {
			if err := regular(path, efi); err != nil {
				return "", err
			}
		}
		if err := trusted(path, efi, false); err != nil {
			return "", err
		}
	}
	return real, nil
}

// trusted checks one path's owner and mode. Symbolic links have no mode of
// their own; sockets need write permission to be connected to, and live in a
// directory nobody else may enter anyway.
func trusted(path string, fi fs.FileInfo, ancestor bool) error {
	uid, ok := owner(fi)
	if !ok {
		return fmt.Errorf("%s: cannot read its owner", path)
	}
	if uid != 0 && uid != uint32(os.Geteuid()) {
		return fmt.Errorf("%s is owned by uid %d, not root: refusing to trust it (chown root %s, after checking its contents)", path, uid, path)
	}
	mode := fi.Mode()
	if mode&fs.ModeSymlink != 0 || mode&fs.ModeSocket != 0 {
		return nil
	}
	if ancestor && mode&fs.ModeSticky != 0 {
		return nil
	}
	if perm := mode.Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s is writable by %s (mode %04o): refusing to trust it (chmod go-w %s, after checking its contents)", path, writers(perm), perm, path)
	}
	return nil
}

func writers(perm fs.FileMode) string {
	var w []string
	if perm&0o020 != 0 {
		w = append(w, "its group")
	}
	if perm&0o002 != 0 {
		w = append(w, "everyone")
	}
	return strings.Join(w, " and ")
}

// regular refuses a state file that is not a regular file.
func regular(path string, fi fs.FileInfo) error {
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		return nil
	case mode&fs.ModeSymlink != 0:
		return fmt.Errorf("state file %s is a symbolic link: refusing to follow it (remove it; smtpguard keeps its state files in the state directory itself)", path)
	default:
		return fmt.Errorf("state file %s is not a regular file (%s): refusing to use it (remove it)", path, atomicfile.Kind(mode))
	}
}

func owner(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}

// OpenFile opens the state file name in dir without following a symbolic
// link, and refuses it unless it is a regular file owned by root (or the
// effective uid) that nobody else may write. flag and perm are as for
// os.OpenFile; O_NOFOLLOW and O_CLOEXEC are added.
func OpenFile(dir, name string, flag int, perm os.FileMode) (*os.File, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("state file %s is a symbolic link: refusing to follow it (remove it)", path)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = regular(path, fi)
	}
	if err == nil {
		err = trusted(path, fi, false)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// PrepareDB makes sure the database file name in dir exists as a trusted
// regular file, for a library (SQLite) that opens it by path itself: it
// lstats the path, opens it with O_NOFOLLOW (creating it, mode 0600, when
// absent) and checks that the file opened is the one lstat saw. created
// reports that the file did not exist; size is its size before any use.
func PrepareDB(dir, name string) (created bool, size int64, err error) {
	path := filepath.Join(dir, name)
	before, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		created = true
	case err != nil:
		return false, 0, fmt.Errorf("database %s: %w", path, err)
	default:
		if err := regular(path, before); err != nil {
			return false, 0, err
		}
	}
	f, err := OpenFile(dir, name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, 0, fmt.Errorf("open database %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, 0, fmt.Errorf("database %s: %w", path, err)
	}
	if !created && !os.SameFile(before, fi) {
		return false, 0, fmt.Errorf("database %s was replaced while being opened: refusing to use it (check who else writes to %s)", path, dir)
	}
	return created, fi.Size(), nil
}
