//go:build !unix

package mta

import (
	"fmt"
	"io/fs"
)

func fileOwner(fs.FileInfo) (uid, gid int) { return -1, -1 }

func hangup(int) error { return fmt.Errorf("signals: %w", ErrUnsupported) }
