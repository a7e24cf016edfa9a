package daemon

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// RepairInfo counts the drift repairs since the daemon started.
type RepairInfo struct {
	Count    int64
	Last     time.Time // zero: none yet
	Problems []string  // what was wrong before the last one
}

// State is what the web UI shows of the daemon that serves it.
type State struct {
	Recording bool // reading blocked attempts from the kernel
	Repairs   RepairInfo
}

// State reports whether blocked attempts are being recorded and the drift
// repairs so far.
func (d *Daemon) State() State {
	d.mu.Lock()
	rep := d.repairs
	rep.Problems = slices.Clone(rep.Problems)
	d.mu.Unlock()
	return State{Recording: d.eventStreams.Load() > 0, Repairs: rep}
}

// repairAudit hands repairs to the audit log without holding up the
// reconcile loop: a repair often happens while a change holds the database,
// and the loop must go on feeding the watchdog.
type repairAudit struct {
	mu      sync.Mutex // held by the one write in flight
	pending atomic.Int64
	wg      sync.WaitGroup
}

// recordRepair counts a drift repair and puts it in the audit log (the
// engine rate-limits those records, so a flapping ruleset cannot flood it).
func (d *Daemon) recordRepair(backend string, drift []string) {
	d.mu.Lock()
	d.repairs.Count++
	d.repairs.Last = time.Now()
	d.repairs.Problems = slices.Clone(drift)
	d.mu.Unlock()
	a := &d.audit
	a.pending.Add(1)
	if !a.mu.TryLock() {
		return // the write in flight or the next one reports this one too
	}
	a.wg.Go(func() {
		defer a.mu.Unlock()
		n := a.pending.Swap(0)
		// Not the reconcile's context: a repair that happened is recorded
		// even while the daemon stops.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := d.eng.RecordRepair(ctx, backend, drift, int(n)); err != nil {
			d.log.Warn("cannot record the repair in the audit log", "err", err)
		}
	})
}
