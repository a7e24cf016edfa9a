package store

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// lowSpace is the free space under which a failed write is blamed on a
// full file system: SQLite needs a few pages for the WAL and its index.
const lowSpace = 256 << 10

// explain turns SQLite's terse failures into what an administrator can act
// on. SQLite reports a full tmpfs as a shared-memory I/O error, not as
// SQLITE_FULL, so the directory's free space is checked as well.
func explain(dir string, err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	if isBusy(err) {
		return fmt.Errorf("the database is locked by another process (waited 10 s); retry, or find what holds %s open: %w", dir, err)
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_READONLY:
		return fmt.Errorf("state directory %s is read-only; make it writable (is the file system mounted read-only?): %w", dir, err)
	case sqlite3.SQLITE_FULL:
		return fmt.Errorf("state directory %s is full; free some space and retry: %w", dir, err)
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN:
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Bavail*uint64(st.Bsize) < lowSpace {
			return fmt.Errorf("state directory %s is full (%d bytes free); free some space and retry: %w", dir, st.Bavail*uint64(st.Bsize), err)
		}
		if unix.Access(dir, unix.W_OK) != nil {
			return fmt.Errorf("state directory %s is not writable; check its permissions and mount: %w", dir, err)
		}
	}
	return err
}
