//go:build linux

package bpf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// ErrNotInstalled is returned (wrapped) by Events when the ring buffer is
// not pinned yet: the daemon's supervisor retries after Apply.
var ErrNotInstalled = errors.New("the bpf programs are not installed")

// dropsInterval is how often the drop counter is read and the ring's pin
// checked (a Remove and Apply replace the ring, and our reader would hear
// nothing).
const dropsInterval = time.Second

// Events is part of enforce.Backend: it delivers each event of the ring
// buffer, and one enforce.ActionLost event per event the ring had no room
// for (the daemon counts those one by one). sink is called from two
// goroutines (events, and drop reports once a second).
func (b *Backend) Events(ctx context.Context, sink func(enforce.Event)) error {
	return b.EventsDetailed(ctx, func(ev Event) {
		if ev.Action != enforce.ActionLost {
			sink(ev.Event)
			return
		}
		for range ev.Lost {
			sink(ev.Event)
		}
	})
}

// EventsDetailed is Events with the process behind each attempt. Lost
// events arrive as one Event with Action enforce.ActionLost and Lost set to
// how many were dropped since the last report. It returns when ctx ends, or with an error
// when the ring buffer is not pinned or was replaced.
func (b *Backend) EventsDetailed(ctx context.Context, sink func(Event)) error {
	ringPath := filepath.Join(b.PinDir(), mapEvents)
	ring, err := ebpf.LoadPinnedMap(ringPath, nil)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no ring buffer pinned at %s: %w", ringPath, ErrNotInstalled)
	}
	if err != nil {
		return fmt.Errorf("open ring buffer %s: %w", ringPath, err)
	}
	defer ring.Close()
	ringID, err := mapID(ring)
	if err != nil {
		return err
	}
	drops, err := ebpf.LoadPinnedMap(filepath.Join(b.PinDir(), mapDrops), nil)
	if err != nil {
		return fmt.Errorf("open drop counter: %w", err)
	}
	defer drops.Close()
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		return fmt.Errorf("read ring buffer %s: %w", ringPath, err)
	}
	defer rd.Close()

	lastDrops, err := sumDrops(drops)
	if err != nil {
		return err
	}
	pidns, err := b.newPidNSWriter()
	if err != nil {
		// The events still count; only their pids cannot be trusted.
		b.log.Warn("cannot tell the programs this reader's pid namespace: events carry no pid", "err", err)
		pidns = &pidNSWriter{}
	}
	stop := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(dropsInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				rd.Close() // ends the blocked Read
				return
			case <-done:
				return
			case <-t.C:
			}
			if id, err := pinnedMapID(ringPath); err != nil || id != ringID {
				stop <- fmt.Errorf("ring buffer %s was replaced or removed: reopen it", ringPath)
				rd.Close()
				return
			}
			if pidns.path != "" {
				if changed, err := pidns.ensure(); err != nil {
					b.log.Warn("keep this reader's pid namespace in the programs' map", "err", err)
				} else if changed {
					b.log.Info("wrote this reader's pid namespace into the programs' map again", "map", mapPidNS)
				}
			}
			n, err := sumDrops(drops)
			if err != nil {
				b.log.Warn("read the bpf event drop counter", "err", err)
				continue
			}
			// Reports come from this goroutine while Read runs on the
			// other: the sink must not block and must be safe for that.
			if n > lastDrops {
				sink(Event{Event: enforce.Event{Time: time.Now(), Action: enforce.ActionLost, LostReason: enforce.LostRingFull}, Lost: n - lastDrops})
			}
			lastDrops = n
		}
	}()
	var rec ringbuf.Record
	warnedPids := false
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			select {
			case err := <-stop:
				return err
			default:
			}
			if errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		ev, ok := decodeEvent(rec.RawSample, bootToWall)
		if !ok {
			b.log.Warn("malformed bpf event", "bytes", len(rec.RawSample))
			continue
		}
		if !pidns.pidsOK(nativeEndian.Uint64(rec.RawSample[evBootNs:])) {
			if !warnedPids && !pidns.valid.Load() {
				b.log.Info("events carry no pid: the programs number pids in the initial pid namespace, not this reader's (pins without " + mapPidNS + ", or a kernel before 6.10 without bpf_get_ns_current_pid_tgid for cgroup programs)")
				warnedPids = true
			}
			ev.PID, ev.TGID = 0, 0 // unknown, not another namespace's number
		}
		sink(ev)
	}
}

func mapID(m *ebpf.Map) (ebpf.MapID, error) {
	info, err := m.Info()
	if err != nil {
		return 0, fmt.Errorf("map info: %w", err)
	}
	id, _ := info.ID()
	return id, nil
}

func pinnedMapID(path string) (ebpf.MapID, error) {
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	return mapID(m)
}

func sumDrops(m *ebpf.Map) (uint64, error) {
	var per []uint64
	if err := m.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("read drop counter: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// DroppedEvents is how many events the ring buffer had no room for since the
// programs were installed, summed over CPUs.
func (b *Backend) DroppedEvents() (uint64, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(b.PinDir(), mapDrops), nil)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("no drop counter pinned: %w", ErrNotInstalled)
	}
	if err != nil {
		return 0, err
	}
	defer m.Close()
	return sumDrops(m)
}

// bootToWall turns a CLOCK_BOOTTIME timestamp into wall-clock time.
func bootToWall(bootNs uint64) time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return now
	}
	return now.Add(-time.Duration(ts.Nano() - int64(bootNs)))
}

// decodeEvent parses one ring buffer record (layout: the ev* offsets).
func decodeEvent(raw []byte, wall func(uint64) time.Time) (Event, bool) {
	if len(raw) < eventSize {
		return Event{}, false
	}
	u64 := func(off int) uint64 { return nativeEndian.Uint64(raw[off:]) }
	var ev Event
	ev.Time = wall(u64(evBootNs))
	pidTgid, uidGid := u64(evPidTgid), u64(evUIDGID)
	ev.PID, ev.TGID = uint32(pidTgid), uint32(pidTgid>>32)
	ev.UID, ev.GID, ev.HasUID = uint32(uidGid), uint32(uidGid>>32), true
	ev.SocketCookie, ev.NetnsCookie = u64(evSockCookie), u64(evNetnsCookie)
	ev.Family = int(nativeEndian.Uint32(raw[evFamily:]))
	ev.DstPort = nativeEndian.Uint16(raw[evPort:])
	ev.Mapped = raw[evFlags]&eventFlagMapped != 0
	switch ev.Family {
	case 4:
		ev.Dst = netip.AddrFrom4([4]byte(raw[evAddr : evAddr+4]))
	case 6:
		ev.Dst = netip.AddrFrom16([16]byte(raw[evAddr : evAddr+16]))
	default:
		return Event{}, false
	}
	switch raw[evAction] {
	case modeReject:
		ev.Action = enforce.ActionBlocked
	case modeRedirect:
		ev.Action = enforce.ActionRedirected
	case modeLog:
		ev.Action = enforce.ActionLogged
	case modeExplain:
		ev.Action = enforce.ActionExplained
		if ev.DstPort == policy.ImplicitTLSPort {
			ev.Action = enforce.ActionBlocked // refused as in reject mode
		}
	default:
		return Event{}, false
	}
	if raw[evFlags]&eventFlagRateLimited != 0 {
		ev.Action = enforce.ActionRateLimited
	}
	comm := raw[evComm : evComm+commLen]
	for i, c := range comm {
		if c == 0 {
			comm = comm[:i]
			break
		}
	}
	ev.Comm = string(comm)
	return ev, true
}
