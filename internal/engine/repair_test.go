package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/store"
)

// TestRecordRepairIsAuditedAndRateLimited: a repair is in the audit log as
// the daemon's, changes no policy, and a ruleset flapping many times a
// minute writes one record a minute that counts the others.
func TestRecordRepairIsAuditedAndRateLimited(t *testing.T) {
	f := newFixture(t)
	f.eng.Close()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	cfg := f.cfg
	cfg.Now = func() time.Time { return now }
	eng, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	ctx := context.Background()
	rev, _ := eng.Store().Revision(ctx)

	var wrote []bool
	for i := range 50 { // a flapping ruleset: 50 repairs within 50 seconds
		ok, err := eng.RecordRepair(ctx, "fake", []string{"chain output missing"}, 1)
		if err != nil {
			t.Fatal(err)
		}
		wrote = append(wrote, ok)
		if i < 49 {
			now = now.Add(time.Second)
		}
	}
	if !wrote[0] || strings.Count(fmtBools(wrote), "t") != 1 {
		t.Errorf("records written for 50 repairs in 50s: %s, want only the first", fmtBools(wrote))
	}
	now = now.Add(RepairAuditEvery)
	if ok, err := eng.RecordRepair(ctx, "fake", []string{"rule for uid 1001 missing"}, 2); err != nil || !ok {
		t.Fatalf("repair a minute later = %v, %v; want a record", ok, err)
	}
	recs, err := eng.Audit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Actor, Source, Operation, Detail, Outcome string }
	var got []row
	for _, r := range recs {
		got = append(got, row{r.Actor, r.Source, r.Operation, r.Detail, r.Outcome})
	}
	want := []row{
		{"daemon", "daemon", "repair", "fake rules restored: rule for uid 1001 missing (and 50 earlier repairs since the last record)", "ok"},
		{"daemon", "daemon", "repair", "fake rules restored: chain output missing", "ok"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit log (-want +got):\n%s", diff)
	}
	if after, _ := eng.Store().Revision(ctx); after != rev {
		t.Errorf("recording a repair changed the policy revision %d -> %d", rev, after)
	}
	last, ok, err := eng.LastRepair(ctx, now.Add(-time.Hour))
	if err != nil || !ok || last.Detail != want[0].Detail {
		t.Errorf("LastRepair() = %+v, %v, %v; want the newest repair", last, ok, err)
	}
	if _, ok, _ := eng.LastRepair(ctx, now.Add(time.Hour)); ok {
		t.Error("LastRepair() found a repair older than its bound")
	}
}

func fmtBools(bs []bool) string {
	var b strings.Builder
	for _, v := range bs {
		if v {
			b.WriteByte('t')
		} else {
			b.WriteByte('.')
		}
	}
	return b.String()
}
