package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// A database written by a build that stopped at schema 3 (before web
// accounts) keeps its policy and gains the accounts tables on Open.
func TestOpenUpgradesSchema3Database(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.version > 3 {
			break
		}
		if _, err := db.Exec(m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	if _, err := db.Exec("PRAGMA user_version = 3"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := openAt(t, path)
	if v, err := s.SchemaVersion(t.Context()); err != nil || v != LatestSchemaVersion() {
		t.Fatalf("SchemaVersion() after upgrade = %d, %v; want %d", v, err, LatestSchemaVersion())
	}
	want := policy.Default()
	want.Enabled = true
	putPolicy(t, s, want, time.Now(), "test")
	hash, err := HashPassword("correct horse battery", Argon2Params{Memory: 1024, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(t.Context(), "admin", "admin", hash, time.Now()); err != nil {
		t.Fatalf("CreateAccount on an upgraded database: %v", err)
	}
}

// Another process holding the write lock makes a write fail after one busy
// timeout with an error that says so, instead of retrying for minutes.
func TestLockedDatabaseSaysLocked(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 10 s busy timeout")
	}
	s, path := newTestStore(t)
	holder, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	conn, err := holder.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK")

	// Reading works while the lock is held, and so does opening.
	s2 := openAt(t, path)
	if _, _, err := s2.Policy(t.Context()); err != nil {
		t.Errorf("Policy() while another process holds the write lock = %v", err)
	}
	_, err = s.Begin(t.Context())
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("Begin() while locked = %v; want an error saying the database is locked by another process", err)
	}
}
