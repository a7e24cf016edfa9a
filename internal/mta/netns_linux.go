package mta

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// inNetNS runs fn in the network namespace of pid, where its listening
// sockets are reachable: directly when that is this process's namespace (the
// usual case), otherwise on a thread moved into it. That needs
// CAP_SYS_ADMIN, which root has outside a sandbox.
func inNetNS(procRoot string, pid int, fn func() error) error {
	target := filepath.Join(procRoot, strconv.Itoa(pid), "ns", "net")
	theirs, err1 := os.Stat(target)
	ours, err2 := os.Stat("/proc/self/ns/net")
	if err1 != nil || err2 != nil || os.SameFile(theirs, ours) {
		return fn()
	}
	f, err := os.Open(target)
	if err != nil {
		return fmt.Errorf("open %s: %w", target, err)
	}
	defer f.Close()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer self.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering the network namespace of pid %d: %w", pid, err)
			return
		}
		err := fn()
		// A thread that cannot go back stays locked and dies with this goroutine.
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
