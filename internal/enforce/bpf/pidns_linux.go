//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The events' pids are numbered in the pid namespace named in sg_pidns
// (pidns.go). Its writer is the event reader, EventsDetailed: the daemon,
// whose /proc enrichment looks the pids up, and the only process reading
// the ring. It writes its own namespace when it opens the ring and puts it
// back each second if someone changed it (an upgrade's Apply creating the
// map afresh while the reader runs); events stamped before such a change
// lose their pids (pidsOK). Apply leaves the map alone: the CLI
// may apply from another pid namespace (nsenter) than the daemon's.

// ownPidNS is sg_pidns's value for the caller's pid namespace.
func ownPidNS() ([pidNSSize]byte, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return [pidNSSize]byte{}, fmt.Errorf("stat /proc/self/ns/pid (is /proc mounted?): %w", err)
	}
	return pidNSValue(st.Dev, st.Ino), nil
}

// pidNSWriter keeps sg_pidns naming the reader's pid namespace.
type pidNSWriter struct {
	path string
	want [pidNSSize]byte
	// valid: the events' pids are ours to look up. They are not when the
	// reader runs in a pid namespace other than the initial one and the
	// programs cannot number pids in it (no sg_pidns pinned, or a kernel
	// without bpf_get_ns_current_pid_tgid): then they are the initial
	// namespace's, which would name the wrong process here. Read by the
	// ring's reader goroutine, set by the ticker's.
	valid atomic.Bool
	// since is when (CLOCK_BOOTTIME ns) this writer last changed the map.
	// An event stamped before it may have been numbered in the namespace
	// the map named before (another reader's, or the initial one): its
	// pids are not ours. The programs take the time before they read the
	// map, so an event stamped at or after since read our namespace.
	since atomic.Uint64
}

// pidsOK: the pids of an event stamped bootNs are numbered in the reader's
// namespace (or are 0).
func (w *pidNSWriter) pidsOK(bootNs uint64) bool {
	return w.valid.Load() && bootNs >= w.since.Load()
}

// newPidNSWriter writes the caller's namespace into the pinned sg_pidns.
func (b *Backend) newPidNSWriter() (*pidNSWriter, error) {
	want, err := ownPidNS()
	if err != nil {
		return nil, err
	}
	w := &pidNSWriter{path: filepath.Join(b.PinDir(), mapPidNS), want: want}
	if _, err := w.ensure(); err != nil {
		return nil, err
	}
	return w, nil
}

// ensure writes the namespace if the pinned map holds another; changed
// tells. A missing map (pins of an older version, until Apply adds it) is
// no error.
func (w *pidNSWriter) ensure() (changed bool, err error) {
	inInitial := w.want == [pidNSSize]byte{}
	m, err := ebpf.LoadPinnedMap(w.path, nil)
	if errors.Is(err, os.ErrNotExist) {
		w.valid.Store(inInitial)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open pinned map %s: %w", w.path, err)
	}
	defer m.Close()
	if err := pidNSMapSpecs()[mapPidNS].Compatible(m); err != nil {
		w.valid.Store(inInitial) // Verify reports the layout
		return false, nil
	}
	w.valid.Store(inInitial || haveNsPid())
	var have [pidNSSize]byte
	if err := m.Lookup(uint32(0), &have); err != nil {
		return false, fmt.Errorf("read map %s: %w", mapPidNS, err)
	}
	if have == w.want {
		return false, nil
	}
	if err := m.Update(uint32(0), w.want, ebpf.UpdateAny); err != nil {
		return false, fmt.Errorf("update map %s: %w", mapPidNS, err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		w.since.Store(^uint64(0)) // no event's pids can be told apart
		return true, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	w.since.Store(uint64(ts.Nano()))
	return true, nil
}
