package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

// TestDriftRepairIsInTheAuditLogAndTheState: a repaired flush is counted in
// the daemon's state, with what was wrong, and recorded in the audit log as
// the daemon's, without a policy change.
func TestDriftRepairIsInTheAuditLogAndTheState(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.eng.Enable(ctx, admin, "fake"); err != nil {
		t.Fatal(err)
	}
	rev, _ := f.eng.Store().Revision(ctx)
	d := f.start(t, Config{})
	if st := d.State(); st.Repairs.Count != 0 || !st.Repairs.Last.IsZero() {
		t.Fatalf("state before any drift = %+v, want no repairs", st)
	}
	f.backend.Tamper(nil) // nft flush ruleset
	waitFor(t, "repair counted in the state", func() bool { return d.State().Repairs.Count == 1 })
	st := d.State()
	if st.Repairs.Last.IsZero() || len(st.Repairs.Problems) == 0 {
		t.Errorf("state after a repair = %+v, want when and what was wrong", st.Repairs)
	}
	var rec store.AuditRecord
	waitFor(t, "repair in the audit log", func() bool {
		r, ok, err := f.eng.LastRepair(ctx, time.Now().Add(-time.Hour))
		rec = r
		return err == nil && ok
	})
	if rec.Actor != "daemon" || rec.Operation != engine.OpRepair || !strings.HasPrefix(rec.Detail, "fake rules restored: ") || rec.Outcome != "ok" {
		t.Errorf("repair record = %+v, want the daemon's repair of the fake rules", rec)
	}
	if after, _ := f.eng.Store().Revision(ctx); after != rev {
		t.Errorf("a repair changed the policy revision %d -> %d", rev, after)
	}
}
