package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/smtpguard/smtpguard/internal/store"
)

// RepairAuditEvery is how often at most RecordRepair writes an audit record:
// a ruleset that something flaps many times a second must not flood the
// audit log. Repairs in between are counted into the next record.
const RepairAuditEvery = time.Minute

// OpRepair is the audit operation of a drift repair.
const OpRepair = "repair"

// repairLog rate-limits repair audit records; the zero value is ready.
type repairLog struct {
	mu      sync.Mutex
	last    time.Time // when the last record was written
	pending int       // repairs since then not yet recorded
}

// RecordRepair appends an audit record (actor "daemon") saying that the
// kernel rules of backend were restored after drift, and what was wrong
// before the last of n repairs (n < 1 counts as 1). It changes no policy.
// At most one record is written per RepairAuditEvery; the repairs in between
// are counted in the next one. It reports whether a record was written.
func (e *Engine) RecordRepair(ctx context.Context, backend string, problems []string, n int) (bool, error) {
	now := e.cfg.Now()
	n = max(n, 1)
	r := &e.repairs
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < RepairAuditEvery {
		r.pending += n
		return false, nil
	}
	r.pending += n - 1 // the earlier ones of this batch
	what := strings.Join(problems, "; ")
	if what == "" {
		what = "the rules differed from the stored policy"
	}
	detail := fmt.Sprintf("%s rules restored: %s", backend, what)
	if r.pending > 0 {
		detail += fmt.Sprintf(" (and %d earlier repair%s since the last record)", r.pending, plural(r.pending))
	}
	rec := store.AuditRecord{At: now, Actor: "daemon", Source: "daemon", Operation: OpRepair, Detail: detail, Outcome: "ok"}
	if err := e.store.AppendAudit(ctx, rec); err != nil {
		r.pending++ // told in the next record instead
		return false, fmt.Errorf("record the repair of the %s rules in the audit log: %w", backend, err)
	}
	r.last, r.pending = now, 0
	return true, nil
}

// LastRepair returns the newest repair record of the audit log written
// since then, and whether there is one.
func (e *Engine) LastRepair(ctx context.Context, since time.Time) (store.AuditRecord, bool, error) {
	return e.store.LastAudit(ctx, OpRepair, since)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
