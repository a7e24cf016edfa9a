package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PIDFile is the daemon's pid file in the state directory. The daemon holds an
// flock on it for its lifetime, so a second daemon on the same state
// directory is refused at start, and a file left by a daemon that died (no
// lock holder) is simply taken over.
const PIDFile = "daemon.pid"

// AlreadyRunningError is returned when another daemon serves the state
// directory.
type AlreadyRunningError struct {
	Path string
	PID  int // 0 when the file names no pid
}

func (e *AlreadyRunningError) Error() string {
	who := "another smtpguard daemon"
	if e.PID > 0 {
		who = fmt.Sprintf("another smtpguard daemon (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s already serves this state directory (it holds %s): stop it first ('systemctl stop smtpguard'), or give this one another --state-dir", who, e.Path)
}

// lockPIDFile takes the pid file at path and writes our pid into it. release
// drops the lock (the kernel drops it too when the process dies).
func lockPIDFile(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open daemon pid file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			data := make([]byte, 32)
			n, _ := f.ReadAt(data, 0)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(data[:n])))
			return nil, &AlreadyRunningError{Path: path, PID: pid}
		}
		return nil, fmt.Errorf("lock daemon pid file %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write daemon pid file %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write daemon pid file %s: %w", path, err)
	}
	// The file stays (removing it would race the next daemon's lock); its
	// lock, not its existence, says a daemon runs.
	return func() { f.Close() }, nil
}
