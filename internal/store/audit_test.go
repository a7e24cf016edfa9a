package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestAuditRoundTripsFields(t *testing.T) {
	ctx := t.Context()
	s, _ := newTestStore(t)
	want := []AuditRecord{
		{
			At:        testAt,
			Actor:     "web:alice",
			Source:    "web",
			Remote:    "[2001:db8::1]:51234",
			Operation: "allow",
			Detail:    "user bob",
			Before:    `{"version":1,"allowed_users":[]}`,
			After:     "{\"version\":1,\n \"allowed_users\":[\"bob\"],\n \"note\":\"héllo ✉\"}",
			Outcome:   "ok",
		},
		{
			At:        testAt.Add(time.Second),
			Actor:     "root",
			Source:    "cli",
			Operation: "enable",
			Outcome:   "nft: apply: operation not permitted",
		},
	}
	for _, r := range want {
		if err := s.AppendAudit(ctx, r); err != nil {
			t.Fatalf("AppendAudit(%+v) = %v", r, err)
		}
	}
	got, err := s.Audit(ctx, AuditFilter{})
	if err != nil {
		t.Fatalf("Audit() = %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("Audit() = %d records, want %d", len(got), len(want))
	}
	if got[0].ID <= got[1].ID || got[1].ID <= 0 {
		t.Errorf("Audit() ids = %d, %d, want positive and newest first", got[0].ID, got[1].ID)
	}
	// Newest first: the second record appended comes back first.
	if diff := cmp.Diff([]AuditRecord{want[1], want[0]}, got, cmpopts.IgnoreFields(AuditRecord{}, "ID")); diff != "" {
		t.Errorf("Audit() mismatch (-want +got):\n%s", diff)
	}
}

func TestAuditInTransactionFollowsTheTransaction(t *testing.T) {
	ctx := t.Context()
	s, path := newTestStore(t)
	other := openAt(t, path)
	rec := func(op string) AuditRecord {
		return AuditRecord{At: testAt, Actor: "root", Source: "cli", Operation: op, Outcome: "ok"}
	}
	operations := func() []string {
		t.Helper()
		recs, err := other.Audit(ctx, AuditFilter{})
		if err != nil {
			t.Fatalf("Audit() = %v", err)
		}
		var ops []string
		for _, r := range recs {
			ops = append(ops, r.Operation)
		}
		return ops
	}

	// A change the kernel refused is rolled back together with its record.
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin() = %v", err)
	}
	if err := tx.AppendAudit(ctx, rec("rolled back")); err != nil {
		t.Fatalf("Tx.AppendAudit() = %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatalf("Rollback() = %v", err)
	}
	if got := operations(); len(got) != 0 {
		t.Errorf("Audit() after Rollback() = %q, want no records", got)
	}

	// A committed change keeps its record, invisible until the commit.
	tx, err = s.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin() = %v", err)
	}
	t.Cleanup(func() { tx.Rollback() })
	if err := tx.AppendAudit(ctx, rec("committed")); err != nil {
		t.Fatalf("Tx.AppendAudit() = %v", err)
	}
	if got := operations(); len(got) != 0 {
		t.Errorf("Audit() before Commit() = %q, want no records yet", got)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit() = %v", err)
	}

	// A failed operation has no transaction and writes on its own.
	if err := s.AppendAudit(ctx, rec("failed outside a transaction")); err != nil {
		t.Fatalf("Store.AppendAudit() = %v", err)
	}
	if diff := cmp.Diff([]string{"failed outside a transaction", "committed"}, operations()); diff != "" {
		t.Errorf("Audit() operations (-want +got):\n%s", diff)
	}
}

func TestAuditFilters(t *testing.T) {
	ctx := t.Context()
	s, _ := newTestStore(t)
	ops := []string{"enable", "allow", "revoke", "set ports", "disable"}
	for i, op := range ops {
		r := AuditRecord{At: testAt.Add(time.Duration(i) * time.Hour), Actor: "root", Source: "cli", Operation: op, Outcome: "ok"}
		if err := s.AppendAudit(ctx, r); err != nil {
			t.Fatalf("AppendAudit(%s) = %v", op, err)
		}
	}
	tests := []struct {
		name   string
		filter AuditFilter
		want   []string
	}{
		{name: "everything, newest first", filter: AuditFilter{}, want: []string{"disable", "set ports", "revoke", "allow", "enable"}},
		{name: "limit", filter: AuditFilter{Limit: 2}, want: []string{"disable", "set ports"}},
		{name: "limit one", filter: AuditFilter{Limit: 1}, want: []string{"disable"}},
		{name: "limit above count", filter: AuditFilter{Limit: 100}, want: []string{"disable", "set ports", "revoke", "allow", "enable"}},
		{name: "negative limit means none", filter: AuditFilter{Limit: -1}, want: []string{"disable", "set ports", "revoke", "allow", "enable"}},
		{name: "since is inclusive", filter: AuditFilter{Since: testAt.Add(2 * time.Hour)}, want: []string{"disable", "set ports", "revoke"}},
		{name: "since just after a record", filter: AuditFilter{Since: testAt.Add(2*time.Hour + time.Millisecond)}, want: []string{"disable", "set ports"}},
		{name: "since in another time zone", filter: AuditFilter{Since: testAt.Add(3 * time.Hour).In(time.FixedZone("UTC+5", 5*3600))}, want: []string{"disable", "set ports"}},
		{name: "since and limit", filter: AuditFilter{Since: testAt.Add(time.Hour), Limit: 1}, want: []string{"disable"}},
		{name: "since after everything", filter: AuditFilter{Since: testAt.Add(24 * time.Hour)}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := s.Audit(ctx, tt.filter)
			if err != nil {
				t.Fatalf("Audit(%+v) = %v", tt.filter, err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.Operation)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Audit(%+v) operations (-want +got):\n%s", tt.filter, diff)
			}
		})
	}
}

func TestAuditEmpty(t *testing.T) {
	s, _ := newTestStore(t)
	recs, err := s.Audit(t.Context(), AuditFilter{})
	if err != nil || len(recs) != 0 {
		t.Errorf("Audit() of a fresh database = %+v, %v, want no records, nil", recs, err)
	}
}
