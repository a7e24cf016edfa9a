// Package atomicfile writes files that readers see whole or not at all, as
// root, without following symbolic links or replacing anything but a regular
// file.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Write replaces path with data, with permissions mode: it writes and syncs a
// temporary file in the same directory and renames it over path, so a crash
// never leaves a half-written file behind. path must be absent or a regular
// file: a symbolic link is refused (rename would replace the link, and root
// must never be steered to a file someone else chose), and so is anything
// else (a device, a directory, a socket), which a rename would destroy.
func Write(path string, data []byte, mode os.FileMode) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("write %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return refuse(path, fi.Mode())
	}
	return replace(path, data, mode)
}

// WriteOutput writes data to a path a person chose as output (export -o):
// a character device (/dev/null, a terminal) or a FIFO gets data written
// into it as it is, as the shell's ">" would; a regular file or a new path is
// replaced whole as by Write; anything else, a symbolic link included, is
// refused.
func WriteOutput(path string, data []byte, mode os.FileMode) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().IsRegular() {
		return Write(path, data, mode)
	}
	m := fi.Mode()
	if m&fs.ModeCharDevice == 0 && m&fs.ModeNamedPipe == 0 {
		return refuse(path, m)
	}
	// No O_CREAT, no O_TRUNC: the node stays what it is. O_NOFOLLOW in case
	// it was swapped for a link since the Lstat.
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if errors.Is(err, unix.ELOOP) {
		return refuse(path, fs.ModeSymlink)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer f.Close()
	if now, err := f.Stat(); err != nil || now.Mode().Type() != m.Type() {
		return fmt.Errorf("write %s: it changed while being opened: refusing to write to it", path)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func refuse(path string, m fs.FileMode) error {
	if m&fs.ModeSymlink != 0 {
		return fmt.Errorf("write %s: it is a symbolic link: refusing to follow it (name its target, or remove the link)", path)
	}
	return fmt.Errorf("write %s: it is %s, not a regular file: refusing to replace it", path, Kind(m))
}

// Kind names the type of file mode m for messages: "a directory", "a
// FIFO", "a symbolic link"...
func Kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	}
	return "of type " + m.Type().String()
}

// replace writes a new temporary file next to path and renames it over path.
// The temporary is created with O_EXCL|O_NOFOLLOW, so nothing planted under
// its name is opened; rename replaces a directory entry and never follows a
// link at path.
func replace(path string, data []byte, mode os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	var tmp *os.File
	var name string
	for range 10 {
		var rnd [8]byte
		rand.Read(rnd[:])
		name = filepath.Join(dir, "."+base+"."+hex.EncodeToString(rnd[:]))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		tmp = f
		break
	}
	if tmp == nil {
		return fmt.Errorf("write %s: cannot create a temporary file in %s", path, dir)
	}
	defer os.Remove(name)
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
