package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", FileName)
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestOpenMigratesAndProtectsTheFile(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	if v, err := s.SchemaVersion(ctx); err != nil || v != LatestSchemaVersion() || v < 1 {
		t.Errorf("SchemaVersion() = %d, %v; want %d", v, err, LatestSchemaVersion())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("database mode = %o, want 600: it holds the audit log", mode)
	}
	s.Close()
	again, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen = %v", err)
	}
	defer again.Close()
	if err := again.IntegrityCheck(ctx); err != nil {
		t.Error(err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	_, path := openTest(t)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "upgrade smtpguard") {
		t.Errorf("Open() of a newer schema = %v, want advice to upgrade", err)
	}
}

func TestPolicyPersistsAndRollsBack(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	p, meta, err := s.Policy(ctx)
	if err != nil || !p.Equal(policy.Default()) || meta.Revision != 0 {
		t.Fatalf("fresh Policy() = %+v rev %d, %v; want defaults", p, meta.Revision, err)
	}
	want := policy.Default()
	want.Enabled, want.Backend, want.Mode, want.AllowLocal = true, "nft", policy.ModeLog, false
	want.Ports = []uint16{25, 2525}
	want.Users = []policy.Principal{{Kind: policy.KindUser, Name: "zed", ID: 9}, {Kind: policy.KindUser, Name: "alice", ID: 1001, ByID: true}}
	want.Groups = []policy.Principal{{Kind: policy.KindGroup, Name: "mailers", ID: 2000}}
	at := time.UnixMilli(1764064800000)
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev, err := tx.PutPolicy(ctx, want, at, "root"); err != nil || rev != 1 {
		t.Fatalf("PutPolicy() = %d, %v", rev, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Errorf("Rollback() after Commit = %v, want nil", err)
	}
	got, meta, err := s.Policy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored policy (-want +got):\n%s", diff)
	}
	if meta.Revision != 1 || meta.UpdatedBy != "root" || !meta.UpdatedAt.Equal(at) {
		t.Errorf("meta = %+v", meta)
	}
	tx, _ = s.Begin(ctx)
	tx.PutPolicy(ctx, policy.Default(), at, "someone")
	tx.AppendAudit(ctx, AuditRecord{At: at, Actor: "someone", Source: "cli", Operation: "import", Outcome: "ok"})
	tx.Rollback()
	if got, meta, _ := s.Policy(ctx); !got.Equal(want) || meta.Revision != 1 {
		t.Errorf("rolled-back change is visible: %+v rev %d", got, meta.Revision)
	}
	if recs, _ := s.Audit(ctx, AuditFilter{}); len(recs) != 0 {
		t.Errorf("rolled-back audit record is visible: %+v", recs)
	}
}

func TestAuditNewestFirstWithFilters(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	base := time.UnixMilli(1764064800000)
	for i, op := range []string{"enable", "allow", "set ports"} {
		r := AuditRecord{At: base.Add(time.Duration(i) * time.Hour), Actor: "root", Source: "cli", Remote: "", Operation: op, Detail: "d", Before: "{}", After: "{}", Outcome: "ok"}
		if err := s.AppendAudit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.Audit(ctx, AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, r := range recs {
		ops = append(ops, r.Operation)
	}
	if diff := cmp.Diff([]string{"set ports", "allow", "enable"}, ops); diff != "" {
		t.Errorf("audit order (-want +got):\n%s", diff)
	}
	if recs, _ := s.Audit(ctx, AuditFilter{Limit: 1}); len(recs) != 1 || recs[0].Operation != "set ports" {
		t.Errorf("Limit 1 = %+v", recs)
	}
	if recs, _ := s.Audit(ctx, AuditFilter{Since: base.Add(90 * time.Minute)}); len(recs) != 1 {
		t.Errorf("Since = %d records, want 1", len(recs))
	}
}

func TestEventsAggregate(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	minute := time.Unix(1764064800, 0) // on a minute boundary
	ev := func(at time.Time, count int64, port uint16) Event {
		return Event{UID: 1001, User: "alice", Family: 4, Address: "192.0.2.2", Port: port, Action: "blocked", Count: count, FirstSeen: at, LastSeen: at}
	}
	if err := s.RecordEvents(ctx, []Event{ev(minute.Add(5*time.Second), 3, 25)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordEvents(ctx, []Event{ev(minute.Add(40*time.Second), 2, 25), ev(minute.Add(2*time.Minute), 1, 25), ev(minute.Add(10*time.Second), 7, 587)}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("Events() = %d aggregates, want 3: %+v", len(evs), evs)
	}
	if evs[0].LastSeen != minute.Add(2*time.Minute) {
		t.Errorf("newest aggregate first: got %+v", evs[0])
	}
	for _, e := range evs {
		if e.Port == 25 && e.Count == 5 && (!e.FirstSeen.Equal(minute.Add(5*time.Second)) || !e.LastSeen.Equal(minute.Add(40*time.Second))) {
			t.Errorf("merged aggregate first/last = %v/%v", e.FirstSeen, e.LastSeen)
		}
	}
	var sum int64
	for _, e := range evs {
		sum += e.Count
	}
	if sum != 13 {
		t.Errorf("total attempts = %d, want 13: counts lost while merging", sum)
	}
	if evs, _ := s.Events(ctx, EventFilter{Limit: 2}); len(evs) != 2 {
		t.Errorf("Limit 2 = %d", len(evs))
	}
	if evs, _ := s.Events(ctx, EventFilter{Since: minute.Add(time.Minute)}); len(evs) != 1 {
		t.Errorf("Since = %d aggregates, want 1", len(evs))
	}
}

func TestConcurrentWritersAllCommit(t *testing.T) {
	ctx := context.Background()
	a, path := openTest(t)
	b, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const each = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for _, s := range []*Store{a, b} {
		wg.Go(func() {
			for range each {
				tx, err := s.Begin(ctx)
				if err != nil {
					errs <- err
					return
				}
				p, _, _ := tx.Policy(ctx)
				if _, err := tx.PutPolicy(ctx, p, time.Now(), "w"); err != nil {
					tx.Rollback()
					errs <- err
					return
				}
				errs <- tx.Commit()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent commit: %v", err)
		}
	}
	if _, meta, _ := a.Policy(ctx); meta.Revision != 2*each {
		t.Errorf("revision = %d after %d commits: writes were lost", meta.Revision, 2*each)
	}
}
