//go:build !linux

package daemon

import "io/fs"

func statIno(fs.FileInfo) (uint64, bool) { return 0, false }
