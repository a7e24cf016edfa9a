package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/smtpguard/smtpguard/internal/statedir"
	"github.com/smtpguard/smtpguard/internal/store"
)

// ErrDatabaseUnreadable marks a database file that exists but is damaged or
// not a database: the daemon waits for it to be restored instead of exiting.
var ErrDatabaseUnreadable = errors.New("the database cannot be read")

// openStore checks that the state directory may be trusted and opens its
// database. real is the directory with symbolic links in its path resolved,
// to be used from then on. fresh says how the database file was found when
// it was absent or empty, for the explanation if it turns out smtpguard's
// rules are in the kernel.
func openStore(ctx context.Context, dir string) (st *store.Store, real, fresh string, err error) {
	dir, err = statedir.Check(dir)
	if err != nil {
		return nil, "", "", err
	}
	created, size, err := statedir.PrepareDB(dir, store.FileName)
	if err != nil {
		return nil, "", "", err
	}
	switch {
	case created:
		fresh = "was missing"
	case size == 0:
		fresh = "was empty"
	}
	path := filepath.Join(dir, store.FileName)
	st, err = store.Open(ctx, path)
	if err != nil {
		if store.IsCorrupt(err) {
			// A damaged database must not be mistaken for a missing one:
			// nothing here touches the kernel, so its rules stay in force.
			return nil, "", "", fmt.Errorf("%w: %w; smtpguard's rules in the kernel stay as they are: restore %s from a backup, or move it away and run 'smtpguard disable' to lift the restriction on purpose", ErrDatabaseUnreadable, err, path)
		}
		return nil, "", "", err
	}
	return st, dir, fresh, nil
}

// StateDir is the state directory in use, with symbolic links in its path
// resolved: files kept beside the database (the web certificate) go there.
func (e *Engine) StateDir() string { return e.cfg.StateDir }
