package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// newTestStore opens a fresh database in its own temporary state directory.
func newTestStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", FileName)
	return openAt(t, path), path
}

// openAt opens the database at path and closes it when the test ends.
func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

// putPolicy commits p as one transaction and returns the new revision.
func putPolicy(t *testing.T, s *Store, p policy.Policy, at time.Time, by string) int64 {
	t.Helper()
	ctx := t.Context()
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin() = %v", err)
	}
	t.Cleanup(func() { tx.Rollback() })
	rev, err := tx.PutPolicy(ctx, p, at, by)
	if err != nil {
		t.Fatalf("PutPolicy(%+v) = %v", p, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
	return rev
}

// setUserVersion writes PRAGMA user_version behind the store's back.
func setUserVersion(t *testing.T, path string, v int) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("sql.Open(%s) = %v", path, err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
		t.Fatalf("PRAGMA user_version = %d: %v", v, err)
	}
}

// fullPolicy sets every field away from its default, with users and groups in
// an order that is neither sorted nor by kind.
func fullPolicy() policy.Policy {
	return policy.Policy{
		Enabled:    true,
		Backend:    "nft",
		Mode:       policy.ModeLog,
		Ports:      []uint16{1, 25, 2525, 65535},
		AllowLocal: false,
		Users: []policy.Principal{
			{Kind: policy.KindUser, Name: "zed", ID: 1009},
			{Kind: policy.KindUser, ID: 4242, ByID: true},
			{Kind: policy.KindUser, Name: "alice", ID: 1001, ByID: true},
			{Kind: policy.KindUser, Name: "bob", ID: 1002},
			{Kind: policy.KindUser, ID: 4294967294, ByID: true},
		},
		Groups: []policy.Principal{
			{Kind: policy.KindGroup, Name: "ops", ID: 3000, ByID: true},
			{Kind: policy.KindGroup, Name: "mailers", ID: 2000},
		},
	}
}

var testAt = time.Date(2026, 11, 25, 10, 30, 15, 123_000_000, time.UTC)

func TestOpenCreatesPrivateDatabase(t *testing.T) {
	ctx := t.Context()
	s, path := newTestStore(t)
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{filepath.Dir(path), 0o700},
		{path, 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatalf("Stat(%s) = %v", c.path, err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("mode of %s = %#o, want %#o: it holds the audit log", c.path, got, c.want)
		}
	}
	v, err := s.SchemaVersion(ctx)
	if err != nil || v != LatestSchemaVersion() {
		t.Errorf("SchemaVersion() = %d, %v, want %d, nil", v, err, LatestSchemaVersion())
	}
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Errorf("IntegrityCheck() = %v, want nil", err)
	}
	// The WAL and shared-memory files hold recent writes (audit records included)
	// until checkpointed: they must be as private as the database.
	putPolicy(t, s, fullPolicy(), testAt, "root")
	if err := s.AppendAudit(ctx, AuditRecord{At: testAt, Actor: "root", Source: "cli", Operation: "enable", Outcome: "ok"}); err != nil {
		t.Fatalf("AppendAudit() = %v", err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		fi, err := os.Stat(path + suffix)
		if err != nil {
			t.Errorf("Stat(%s) = %v, want the WAL-mode companion file", path+suffix, err)
			continue
		}
		if got := fi.Mode().Perm(); got&0o077 != 0 {
			t.Errorf("mode of %s = %#o, want no access for group or others", path+suffix, got)
		}
	}
}

func TestLatestSchemaVersionMatchesMigrations(t *testing.T) {
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatalf("ReadDir(migrations) = %v", err)
	}
	highest := 0
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		n, err := strconv.Atoi(num)
		if err != nil {
			t.Errorf("migration %s: name does not start with its number", e.Name())
			continue
		}
		highest = max(highest, n)
	}
	if highest == 0 {
		t.Fatal("no numbered migrations found")
	}
	if got := LatestSchemaVersion(); got != highest {
		t.Errorf("LatestSchemaVersion() = %d, want %d, the highest migration number", got, highest)
	}
}

func TestReopenIsIdempotent(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	want := fullPolicy()
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin() = %v", err)
	}
	if _, err := tx.PutPolicy(ctx, want, testAt, "root"); err != nil {
		t.Fatalf("PutPolicy() = %v", err)
	}
	if err := tx.AppendAudit(ctx, AuditRecord{At: testAt, Actor: "root", Source: "cli", Operation: "import", Outcome: "ok"}); err != nil {
		t.Fatalf("AppendAudit() = %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	for i := range 3 {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen #%d: Open(%s) = %v", i+1, path, err)
		}
		if v, err := s.SchemaVersion(ctx); err != nil || v != LatestSchemaVersion() {
			t.Errorf("reopen #%d: SchemaVersion() = %d, %v, want %d", i+1, v, err, LatestSchemaVersion())
		}
		got, meta, err := s.Policy(ctx)
		if err != nil {
			t.Fatalf("reopen #%d: Policy() = %v", i+1, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("reopen #%d: Policy() mismatch (-want +got):\n%s", i+1, diff)
		}
		if meta.Revision != 1 {
			t.Errorf("reopen #%d: revision = %d, want 1", i+1, meta.Revision)
		}
		if recs, err := s.Audit(ctx, AuditFilter{}); err != nil || len(recs) != 1 {
			t.Errorf("reopen #%d: Audit() = %d records, %v, want 1", i+1, len(recs), err)
		}
		if err := s.IntegrityCheck(ctx); err != nil {
			t.Errorf("reopen #%d: IntegrityCheck() = %v", i+1, err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("reopen #%d: Close() = %v", i+1, err)
		}
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	s.Close()
	newer := LatestSchemaVersion() + 1
	setUserVersion(t, path, newer)

	s, err = Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatalf("Open() of a schema %d database = nil error, want a refusal", newer)
	}
	for _, want := range []string{
		path,
		fmt.Sprintf("schema version %d is newer than this build understands (%d)", newer, LatestSchemaVersion()),
		"upgrade smtpguard",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open() of a newer schema = %q, want it to contain %q", err, want)
		}
	}
	// The refusal must leave the newer database as it was.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("sql.Open(%s) = %v", path, err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != newer {
		t.Errorf("user_version after the refused Open = %d, %v, want %d", v, err, newer)
	}
}

func TestOpenRefusesNonDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not an SQLite database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatalf("Open() of a text file = nil error, want one")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("Open() of a text file = %q, want it to name %s", err, path)
	}
}

func TestOpenPathWithURICharacters(t *testing.T) {
	// The parents come from the top-level TempDir: a subtest's own TempDir
	// would carry the special character in its name, and the bug would then
	// write outside it.
	top := t.TempDir()
	for i, dirName := range []string{"a#b", "a?b", "a%41b"} {
		t.Run(dirName, func(t *testing.T) {
			parent := filepath.Join(top, strconv.Itoa(i))
			path := filepath.Join(parent, dirName, FileName)
			s := openAt(t, path)
			putPolicy(t, s, fullPolicy(), testAt, "root")
			fi, err := os.Stat(path)
			if err != nil || fi.Size() == 0 {
				t.Errorf("Stat(%s) = %v, %v, want the database written there", path, fi, err)
			}
			if _, err := os.Stat(filepath.Join(parent, "a")); err == nil {
				t.Errorf("Open(%s) created %s instead", path, filepath.Join(parent, "a"))
			}
		})
	}
}

// openConcurrently opens path from n goroutines at once and checks each
// handle sees the latest schema.
func openConcurrently(t *testing.T, path string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			s, err := Open(t.Context(), path)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			if v, err := s.SchemaVersion(t.Context()); err != nil || v != LatestSchemaVersion() {
				errs <- fmt.Errorf("SchemaVersion() = %d, %v, want %d", v, err, LatestSchemaVersion())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Open(%s): %v", path, err)
	}
}

// TestConcurrentOpenOfExistingDatabase: the daemon, the web UI and CLI
// invocations open the same database independently.
func TestConcurrentOpenOfExistingDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	s.Close()
	openConcurrently(t, path, 8)
}

func TestConcurrentOpenOfFreshDatabase(t *testing.T) {
	openConcurrently(t, filepath.Join(t.TempDir(), FileName), 8)
}

func TestFreshDatabaseHasDefaultPolicy(t *testing.T) {
	ctx := t.Context()
	s, _ := newTestStore(t)
	got, meta, err := s.Policy(ctx)
	if err != nil {
		t.Fatalf("Policy() = %v", err)
	}
	if diff := cmp.Diff(policy.Default(), got); diff != "" {
		t.Errorf("Policy() of a fresh database mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Meta{}, meta); diff != "" {
		t.Errorf("Policy() meta of a fresh database mismatch (-want +got):\n%s", diff)
	}
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin() = %v", err)
	}
	t.Cleanup(func() { tx.Rollback() })
	got, meta, err = tx.Policy(ctx)
	if err != nil || !got.Equal(policy.Default()) || meta.Revision != 0 {
		t.Errorf("Tx.Policy() of a fresh database = %+v rev %d, %v, want the default at revision 0", got, meta.Revision, err)
	}
}

func TestPutPolicyPersistsEverything(t *testing.T) {
	ctx := t.Context()
	s, path := newTestStore(t)
	other := openAt(t, path)

	smaller := policy.Default()
	smaller.Ports = []uint16{587}
	smaller.Backend, smaller.Cgroup = "bpf", "/sys/fs/cgroup/system.slice"
	smaller.Users = []policy.Principal{{Kind: policy.KindUser, Name: "bob", ID: 1002, ByID: true}}
	steps := []struct {
		name string
		p    policy.Policy
		by   string
	}{
		{name: "every field", p: fullPolicy(), by: "root"},
		{name: "fewer principals", p: smaller, by: "web:alice"},
		{name: "back to defaults", p: policy.Default(), by: "api:deploy"},
		{name: "same policy again", p: policy.Default(), by: "root"},
	}
	for i, step := range steps {
		at := testAt.Add(time.Duration(i) * time.Minute)
		wantRev := int64(i + 1)
		if rev := putPolicy(t, s, step.p, at, step.by); rev != wantRev {
			t.Errorf("%s: PutPolicy() = revision %d, want %d", step.name, rev, wantRev)
		}
		for _, reader := range []struct {
			name string
			s    *Store
		}{{"same handle", s}, {"second handle", other}} {
			got, meta, err := reader.s.Policy(ctx)
			if err != nil {
				t.Fatalf("%s: Policy() via %s = %v", step.name, reader.name, err)
			}
			if diff := cmp.Diff(step.p, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: Policy() via %s mismatch (-want +got):\n%s", step.name, reader.name, diff)
			}
			wantMeta := Meta{Revision: wantRev, UpdatedAt: at, UpdatedBy: step.by}
			if diff := cmp.Diff(wantMeta, meta); diff != "" {
				t.Errorf("%s: Policy() meta via %s mismatch (-want +got):\n%s", step.name, reader.name, diff)
			}
		}
	}
}

func TestTxSeesItsOwnWritesOthersDoNot(t *testing.T) {
	ctx := t.Context()
	s, path := newTestStore(t)
	other := openAt(t, path)
	putPolicy(t, s, policy.Default(), testAt, "root")

	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin() = %v", err)
	}
	t.Cleanup(func() { tx.Rollback() })
	want := fullPolicy()
	if rev, err := tx.PutPolicy(ctx, want, testAt, "root"); err != nil || rev != 2 {
		t.Fatalf("PutPolicy() = %d, %v, want 2, nil", rev, err)
	}
	got, meta, err := tx.Policy(ctx)
	if err != nil || meta.Revision != 2 {
		t.Fatalf("Tx.Policy() = rev %d, %v, want revision 2", meta.Revision, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Tx.Policy() inside the transaction mismatch (-want +got):\n%s", diff)
	}
	// The daemon polls the revision from its own handle: it must not see a
	// change the kernel has not accepted yet.
	for _, reader := range []*Store{s, other} {
		got, meta, err := reader.Policy(ctx)
		if err != nil || meta.Revision != 1 || !got.Equal(policy.Default()) {
			t.Errorf("Policy() outside the open transaction = %+v rev %d, %v, want the committed default at revision 1", got, meta.Revision, err)
		}
	}
}

func TestRollbackKeepsPreviousPolicy(t *testing.T) {
	ctx := t.Context()
	s, _ := newTestStore(t)
	before := fullPolicy()
	putPolicy(t, s, before, testAt, "root")

	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin() = %v", err)
	}
	if _, err := tx.PutPolicy(ctx, policy.Default(), testAt.Add(time.Hour), "mallory"); err != nil {
		t.Fatalf("PutPolicy() = %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatalf("Rollback() = %v, want nil", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Errorf("second Rollback() = %v, want nil", err)
	}
	if err := tx.Commit(); err == nil {
		t.Errorf("Commit() after Rollback() = nil, want an error")
	}
	got, meta, err := s.Policy(ctx)
	if err != nil {
		t.Fatalf("Policy() = %v", err)
	}
	if diff := cmp.Diff(before, got); diff != "" {
		t.Errorf("Policy() after Rollback() mismatch (-want +got):\n%s", diff)
	}
	if want := (Meta{Revision: 1, UpdatedAt: testAt, UpdatedBy: "root"}); !cmp.Equal(want, meta) {
		t.Errorf("Policy() meta after Rollback() = %+v, want %+v", meta, want)
	}
	// The rolled-back revision number is not burnt.
	if rev := putPolicy(t, s, policy.Default(), testAt, "root"); rev != 2 {
		t.Errorf("PutPolicy() after a rollback = revision %d, want 2", rev)
	}
}

func TestRollbackAfterCommitIsNoOp(t *testing.T) {
	ctx := t.Context()
	s, _ := newTestStore(t)
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin() = %v", err)
	}
	want := fullPolicy()
	if _, err := tx.PutPolicy(ctx, want, testAt, "root"); err != nil {
		t.Fatalf("PutPolicy() = %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Errorf("Rollback() after Commit() = %v, want nil", err)
	}
	if got, meta, err := s.Policy(ctx); err != nil || !got.Equal(want) || meta.Revision != 1 {
		t.Errorf("Policy() after Commit() and Rollback() = %+v rev %d, %v, want the committed policy at revision 1", got, meta.Revision, err)
	}
}

// TestConcurrentWriters runs read-modify-write transactions from two handles
// on the same file, as the CLI and the daemon do: none may fail with
// SQLITE_BUSY and none may be lost.
func TestConcurrentWriters(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a, path := newTestStore(t)
	b := openAt(t, path)

	const goroutinesPerHandle, txPerGoroutine = 4, 5
	const total = 2 * goroutinesPerHandle * txPerGoroutine
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // protects revs
		revs []int64
	)
	errs := make(chan error, total)
	for h, s := range []*Store{a, b} {
		for g := range goroutinesPerHandle {
			wg.Go(func() {
				for i := range txPerGoroutine {
					rev, err := commitOne(ctx, s, fmt.Sprintf("writer %d.%d #%d", h, g, i))
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					revs = append(revs, rev)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent commit: %v", err)
	}
	slices.Sort(revs)
	var want []int64
	for i := range total {
		want = append(want, int64(i+1))
	}
	if diff := cmp.Diff(want, revs); diff != "" {
		t.Errorf("revisions handed out (-want +got):\n%s", diff)
	}
	for _, s := range []*Store{a, b} {
		if _, meta, err := s.Policy(ctx); err != nil || meta.Revision != total {
			t.Errorf("final revision = %d, %v, want %d", meta.Revision, err, total)
		}
		if recs, err := s.Audit(ctx, AuditFilter{}); err != nil || len(recs) != total {
			t.Errorf("Audit() = %d records, %v, want %d", len(recs), err, total)
		}
	}
	if err := a.IntegrityCheck(ctx); err != nil {
		t.Errorf("IntegrityCheck() = %v", err)
	}
}

// commitOne is one engine-style change: read, modify, write with an audit
// record, commit.
func commitOne(ctx context.Context, s *Store, who string) (int64, error) {
	tx, err := s.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", who, err)
	}
	defer tx.Rollback()
	p, meta, err := tx.Policy(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", who, err)
	}
	p.Enabled = !p.Enabled
	rev, err := tx.PutPolicy(ctx, p, time.Now(), who)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", who, err)
	}
	if rev != meta.Revision+1 {
		return 0, fmt.Errorf("%s: PutPolicy() = revision %d after reading %d", who, rev, meta.Revision)
	}
	if err := tx.AppendAudit(ctx, AuditRecord{At: time.Now(), Actor: who, Source: "cli", Operation: "toggle", Outcome: "ok"}); err != nil {
		return 0, fmt.Errorf("%s: %w", who, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("%s: %w", who, err)
	}
	return rev, nil
}
