package daemon

import (
	"context"
	"slices"
	"time"

	"github.com/smtpguard/smtpguard/internal/engine"
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

// recordRepair counts a drift repair and puts it in the audit log (the
// engine rate-limits those records, so a flapping ruleset cannot flood it).
func (d *Daemon) recordRepair(r engine.Reconciled) {
	d.mu.Lock()
	d.repairs.Count++
	d.repairs.Last = time.Now()
	d.repairs.Problems = slices.Clone(r.Drift)
	d.mu.Unlock()
	// Not the reconcile's context: a repair that happened is recorded even
	// while the daemon stops; the store bounds the write itself.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := d.eng.RecordRepair(ctx, r.Backend, r.Drift); err != nil {
		d.log.Warn("cannot record the repair in the audit log", "err", err)
	}
}
