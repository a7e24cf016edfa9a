package mta

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// tempPrefix starts the names of the candidate files smtpguard writes next
// to an MTA's configuration, so a leftover of a crashed run is recognisable.
const tempPrefix = ".smtpguard-"

// fileSnapshot is a file as it was before a change, so the change can be
// undone byte for byte, with the same mode and owner.
type fileSnapshot struct {
	path   string
	exists bool
	data   []byte
	perm   fs.FileMode
	uid    int // -1 when unknown
	gid    int
}

// snapshot reads path. A missing file is a valid snapshot: restoring it
// removes the file again. A symbolic link is followed, so that replacing the
// file replaces its target and keeps the link.
func snapshot(path string) (fileSnapshot, error) {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	s := fileSnapshot{path: path, perm: 0o644, uid: -1, gid: -1}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	s.exists, s.data, s.perm = true, data, fi.Mode().Perm()
	s.uid, s.gid = fileOwner(fi)
	return s, nil
}

// restore puts the file back as it was.
func (s fileSnapshot) restore() error {
	if !s.exists {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return syncDir(filepath.Dir(s.path))
	}
	return s.replace(s.data)
}

// replace atomically replaces the file with data, keeping the snapshot's
// mode and owner.
func (s fileSnapshot) replace(data []byte) error {
	tmp, err := s.writeTemp(data)
	if err != nil {
		return err
	}
	return s.install(tmp)
}

// writeTemp writes data to a new file next to the snapshot's file, with
// its mode and owner, and returns the new file's path. The caller renames
// it into place with install or removes it.
//
// Where the file's directory is read-only but the file itself is writable
// (systemd's ReadWritePaths=-/etc/exim.conf under ProtectSystem=strict bind-
// mounts just the file), the new file is made in the temporary directory
// instead and install writes it over the file in place.
func (s fileSnapshot) writeTemp(data []byte) (string, error) {
	pattern := tempPrefix + filepath.Base(s.path) + "-*"
	f, err := os.CreateTemp(filepath.Dir(s.path), pattern)
	if errors.Is(err, syscall.EROFS) && s.exists {
		f, err = os.CreateTemp("", pattern)
	}
	if err != nil {
		return "", err
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("writing %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(s.perm); err != nil {
		return fail(err)
	}
	if s.uid >= 0 {
		if err := f.Chown(s.uid, s.gid); err != nil {
			return fail(err)
		}
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("writing %s: %w", name, err)
	}
	return name, nil
}

// install renames tmp over the snapshot's file and makes the rename durable.
func (s fileSnapshot) install(tmp string) error {
	err := os.Rename(tmp, s.path)
	if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EBUSY) {
		// The file is a mount point of its own (see writeTemp): a rename
		// cannot replace it, so its content is rewritten in place. Not
		// atomic against a crash, but the MTA has checked the new content
		// and any failure after this restores the previous bytes.
		err = s.overwrite(tmp)
		os.Remove(tmp)
		return err
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(s.path))
}

// overwrite copies the file tmp over the snapshot's file, in place.
func (s fileSnapshot) overwrite(tmp string) error {
	data, err := os.ReadFile(tmp)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("rewriting %s in place: %w", s.path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("rewriting %s in place: %w", s.path, err)
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// restoreAll restores snapshots in reverse order and joins the errors.
func restoreAll(snaps ...fileSnapshot) error {
	var errs []error
	for i := len(snaps) - 1; i >= 0; i-- {
		if err := snaps[i].restore(); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s: %w", snaps[i].path, err))
		}
	}
	return errors.Join(errs...)
}
