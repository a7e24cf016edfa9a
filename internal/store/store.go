// Package store keeps smtpguard's state in SQLite (modernc.org/sqlite, pure Go,
// WAL mode): the policy, the audit log and blocked-attempt events. Schema changes
// are numbered, embedded migrations applied in order at Open.
package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/smtpguard/smtpguard/internal/policy"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// FileName is the database file inside the state directory.
const FileName = "smtpguard.db"

// Store is an open database.
type Store struct {
	db    *sql.DB
	dir   string // the state directory, for explaining failures
	cache policyCache
}

// policyCache keeps the last policy read or written, keyed by its revision
// and time: each revision is written once, in a serialized transaction, so a
// read that finds the same key can skip reading 10,000 allowed users again.
type policyCache struct {
	mu   sync.Mutex // protects the rest
	ok   bool
	meta Meta
	p    policy.Policy
}

// get and put do nothing on a nil cache: reads that must not be cached.
func (c *policyCache) get(m Meta) (policy.Policy, bool) {
	if c == nil {
		return policy.Policy{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ok || c.meta.Revision != m.Revision || !c.meta.UpdatedAt.Equal(m.UpdatedAt) {
		return policy.Policy{}, false
	}
	return c.p.Clone(), true
}

func (c *policyCache) put(m Meta, p policy.Policy) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ok, c.meta, c.p = true, m, p.Clone()
}

// Open opens (creating if needed) the database at path and brings its schema up
// to date. The file is created readable by its owner only: it holds the audit
// log and, later, password hashes.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600) // never a planted link
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	f.Close()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate") // writers take the lock at BEGIN, so they queue instead of failing
	// As a URI, so that '#', '?' and '%' in the state directory's path are
	// taken literally instead of cutting the file name short.
	dsn := (&url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	s := &Store{db: db, dir: filepath.Dir(path)}
	// Several processes may create the database at once (daemon and CLI on a
	// fresh install). SQLite then sometimes answers SQLITE_BUSY at once,
	// without waiting for the busy timeout, while the first one sets up WAL;
	// retry for a bounded time.
	// A busy answer after the full busy timeout means another process really
	// holds the lock: that is reported, not retried.
	for attempt := 0; ; attempt++ {
		began := time.Now()
		err := s.migrate(ctx)
		if err == nil {
			return s, nil
		}
		if !isBusy(err) || time.Since(began) > time.Second || attempt >= 100 || ctx.Err() != nil {
			db.Close()
			return nil, fmt.Errorf("database %s: %w", path, explain(s.dir, err))
		}
		time.Sleep(time.Duration(10+attempt) * time.Millisecond)
	}
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with its number", e.Name())
		}
		body, err := fs.ReadFile(migrationFiles, "migrations/"+e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(body)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	return ms, nil
}

// LatestSchemaVersion is the schema version this build migrates to.
func LatestSchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("read migrations: %w", err)
	}
	// An up-to-date schema needs no write lock: reading commands keep working
	// while another process holds it.
	latest := ms[len(ms)-1].version
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err == nil && version == latest {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()
	var current int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if current > latest {
		return fmt.Errorf("schema version %d is newer than this build understands (%d): upgrade smtpguard", current, latest)
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
			return fmt.Errorf("migration %s: set version: %w", m.name, err)
		}
	}
	return tx.Commit()
}

// SchemaVersion reports the database's schema version.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// IntegrityCheck runs SQLite's integrity check and returns its complaints.
func (s *Store) IntegrityCheck(ctx context.Context) error {
	var res string
	if err := s.db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("integrity check: %s", res)
	}
	return nil
}

// Meta describes the stored policy's last change.
type Meta struct {
	Revision  int64
	UpdatedAt time.Time
	UpdatedBy string
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Policy returns the stored policy, or the default one on a fresh database.
func (s *Store) Policy(ctx context.Context) (policy.Policy, Meta, error) {
	return readPolicy(ctx, s.db, &s.cache)
}

func readPolicy(ctx context.Context, q querier, cache *policyCache) (policy.Policy, Meta, error) {
	p := policy.Default()
	var meta Meta
	var enabled, allowLocal int
	var ports, mode, backendWhy, rateLimit string
	var updatedAt int64
	err := q.QueryRowContext(ctx,
		"SELECT enabled, backend, cgroup, backend_why, mode, ports, allow_local, rate_limit, revision, updated_at, updated_by FROM policy WHERE id = 1").
		Scan(&enabled, &p.Backend, &p.Cgroup, &backendWhy, &mode, &ports, &allowLocal, &rateLimit, &meta.Revision, &updatedAt, &meta.UpdatedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return p, meta, nil
	}
	if err != nil {
		return policy.Policy{}, Meta{}, fmt.Errorf("read policy: %w", err)
	}
	meta.UpdatedAt = time.UnixMilli(updatedAt)
	if cached, ok := cache.get(meta); ok {
		return cached, meta, nil
	}
	p.Enabled, p.AllowLocal, p.Mode = enabled != 0, allowLocal != 0, policy.Mode(mode)
	if backendWhy != "" {
		if err := json.Unmarshal([]byte(backendWhy), &p.BackendWhy); err != nil {
			return policy.Policy{}, Meta{}, fmt.Errorf("read policy: stored backend_why: %w", err)
		}
	}
	if p.Ports, err = policy.ParsePorts(ports); err != nil {
		return policy.Policy{}, Meta{}, fmt.Errorf("read policy: stored ports: %w", err)
	}
	if rateLimit != "" {
		if p.RateLimit, err = policy.ParseRate(rateLimit); err != nil {
			return policy.Policy{}, Meta{}, fmt.Errorf("read policy: stored rate limit: %w", err)
		}
	}
	rows, err := q.QueryContext(ctx, "SELECT kind, name, id, by_id, rate FROM allowed ORDER BY kind, position")
	if err != nil {
		return policy.Policy{}, Meta{}, fmt.Errorf("read allowed principals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pr policy.Principal
		var kind, rate string
		var byID int
		if err := rows.Scan(&kind, &pr.Name, &pr.ID, &byID, &rate); err != nil {
			return policy.Policy{}, Meta{}, fmt.Errorf("read allowed principals: %w", err)
		}
		pr.Kind, pr.ByID = policy.PrincipalKind(kind), byID != 0
		if pr.Rate, err = policy.ParseRateSetting(rate); err != nil {
			return policy.Policy{}, Meta{}, fmt.Errorf("read allowed %s: stored rate: %w", pr, err)
		}
		if pr.Kind == policy.KindGroup {
			p.Groups = append(p.Groups, pr)
		} else {
			p.Users = append(p.Users, pr)
		}
	}
	if err := rows.Err(); err != nil {
		return policy.Policy{}, Meta{}, fmt.Errorf("read allowed principals: %w", err)
	}
	if p.Exceptions, err = readExceptions(ctx, q); err != nil {
		return policy.Policy{}, Meta{}, err
	}
	cache.put(meta, p)
	return p, meta, nil
}

func readExceptions(ctx context.Context, q querier) ([]policy.Exception, error) {
	exs, _, err := readExceptionsAfter(ctx, q, -1, -1)
	return exs, err
}

// readExceptionsAfter reads up to limit exceptions (all when negative) after
// the given position, with their positions.
func readExceptionsAfter(ctx context.Context, q querier, after int64, limit int) ([]policy.Exception, []int64, error) {
	rows, err := q.QueryContext(ctx, "SELECT position, kind, name, id, by_id, destination, ports, rate FROM exceptions WHERE position > ? ORDER BY position LIMIT ?", after, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("read exceptions: %w", err)
	}
	defer rows.Close()
	var out []policy.Exception
	var positions []int64
	for rows.Next() {
		var e policy.Exception
		var kind, ports, rate string
		var byID int
		var pos int64
		if err := rows.Scan(&pos, &kind, &e.Principal.Name, &e.Principal.ID, &byID, &e.Destination, &ports, &rate); err != nil {
			return nil, nil, fmt.Errorf("read exceptions: %w", err)
		}
		if e.Rate, err = policy.ParseRateSetting(rate); err != nil {
			return nil, nil, fmt.Errorf("read exceptions: stored rate: %w", err)
		}
		e.Principal.Kind, e.Principal.ByID = policy.PrincipalKind(kind), byID != 0
		if ports != "" {
			if e.Ports, err = policy.ParsePorts(ports); err != nil {
				return nil, nil, fmt.Errorf("read exceptions: stored ports: %w", err)
			}
		}
		out = append(out, e)
		positions = append(positions, pos)
	}
	return out, positions, rows.Err()
}

// Revision returns the stored policy's revision, cheaply, so the daemon can
// poll for changes made by other processes.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	err := s.db.QueryRowContext(ctx, "SELECT revision FROM policy WHERE id = 1").Scan(&rev)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read policy revision: %w", err)
	}
	return rev, nil
}

// Tx is a write transaction: the engine persists a policy change and its audit
// record in one, and commits only once the kernel has accepted the change.
type Tx struct {
	tx    *sql.Tx
	dir   string
	cache *policyCache

	read     *policy.Policy // what Policy returned, before any write
	readMeta Meta           // and its revision
	wrote    bool           // PutPolicy ran: reads no longer fill the cache
	written  Meta           // what PutPolicy wrote, for the cache at Commit
	newest   policy.Policy
}

// Begin starts a write transaction.
func (s *Store) Begin(ctx context.Context) (*Tx, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin transaction: %w", explain(s.dir, err))
	}
	return &Tx{tx: tx, dir: s.dir, cache: &s.cache}, nil
}

// Commit makes the transaction's writes durable.
func (t *Tx) Commit() error {
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", explain(t.dir, err))
	}
	if t.wrote {
		t.cache.put(t.written, t.newest)
	}
	return nil
}

// Rollback discards the transaction; after Commit it is a no-op.
func (t *Tx) Rollback() error {
	err := t.tx.Rollback()
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

// Policy reads the policy inside the transaction.
func (t *Tx) Policy(ctx context.Context) (policy.Policy, Meta, error) {
	if t.wrote {
		// Uncommitted writes must not reach the shared cache.
		return readPolicy(ctx, t.tx, nil)
	}
	p, meta, err := readPolicy(ctx, t.tx, t.cache)
	if err == nil {
		read := p.Clone()
		t.read, t.readMeta = &read, meta
	}
	return p, meta, err
}

// PutPolicy replaces the stored policy and bumps its revision.
func (t *Tx) PutPolicy(ctx context.Context, p policy.Policy, at time.Time, by string) (int64, error) {
	var old policy.Policy
	var meta Meta
	if t.read != nil && !t.wrote {
		old, meta = *t.read, t.readMeta
	} else {
		var err error
		if old, meta, err = t.Policy(ctx); err != nil {
			return 0, err
		}
	}
	rev := meta.Revision + 1
	backendWhy := ""
	if len(p.BackendWhy) > 0 {
		b, err := json.Marshal(p.BackendWhy)
		if err != nil {
			return 0, fmt.Errorf("write policy: backend_why: %w", err)
		}
		backendWhy = string(b)
	}
	rateLimit := ""
	if !p.RateLimit.IsZero() {
		rateLimit = p.RateLimit.String()
	}
	_, err := t.tx.ExecContext(ctx, `INSERT INTO policy (id, enabled, backend, cgroup, backend_why, mode, ports, allow_local, rate_limit, revision, updated_at, updated_by)
		VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET enabled = excluded.enabled, backend = excluded.backend, cgroup = excluded.cgroup, backend_why = excluded.backend_why, mode = excluded.mode,
			ports = excluded.ports, allow_local = excluded.allow_local, rate_limit = excluded.rate_limit, revision = excluded.revision,
			updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		boolInt(p.Enabled), p.Backend, p.Cgroup, backendWhy, string(p.Mode), policy.PortsString(p.Ports), boolInt(p.AllowLocal), rateLimit, rev, at.UnixMilli(), by)
	if err != nil {
		return 0, fmt.Errorf("write policy: %w", err)
	}
	if err := putAllowed(ctx, t.tx, policy.KindUser, old.Users, p.Users); err != nil {
		return 0, err
	}
	if err := putAllowed(ctx, t.tx, policy.KindGroup, old.Groups, p.Groups); err != nil {
		return 0, err
	}
	if _, err := t.tx.ExecContext(ctx, "DELETE FROM exceptions"); err != nil {
		return 0, fmt.Errorf("write exceptions: %w", err)
	}
	for i, e := range p.Exceptions {
		if _, err := t.tx.ExecContext(ctx, "INSERT INTO exceptions (position, kind, name, id, by_id, destination, ports, rate) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			i, string(e.Principal.Kind), e.Principal.Name, e.Principal.ID, boolInt(e.Principal.ByID), e.Destination, policy.PortsString(e.Ports), e.Rate.String()); err != nil {
			return 0, fmt.Errorf("write exception %s: %w", e, err)
		}
	}
	t.wrote, t.newest = true, p.Clone()
	t.written = Meta{Revision: rev, UpdatedAt: time.UnixMilli(at.UnixMilli()), UpdatedBy: by}
	return rev, nil
}

// putAllowed replaces the stored principals of one kind, was, by want. The
// usual change, some removed and some appended, touches only the rows that
// change; any other change rewrites the kind's rows. Either way it is a fixed
// number of statements, each passing its principals as one JSON array, so
// going from 10,000 allowed users to 3 costs no more statements than going
// from 4 to 3 (issue 12: row-by-row deletes made that quadratic). Positions
// only order the rows, so they may have gaps.
func putAllowed(ctx context.Context, q querier, k policy.PrincipalKind, was, want []policy.Principal) error {
	kind := string(k)
	gone, kept, ok := removedThenAppended(was, want)
	if !ok || kept == 0 {
		if _, err := q.ExecContext(ctx, "DELETE FROM allowed WHERE kind = ?", kind); err != nil {
			return fmt.Errorf("write allowed %ss: %w", kind, err)
		}
		return insertAllowed(ctx, q, kind, 0, want)
	}
	if len(gone) > 0 {
		rows := make([]policy.Principal, len(gone))
		for i, g := range gone {
			rows[i] = was[g]
		}
		list, err := principalsJSON(rows)
		if err != nil {
			return err
		}
		// Uses the allowed_principal index: one lookup per principal removed.
		if _, err := q.ExecContext(ctx, `DELETE FROM allowed WHERE kind = ? AND (name, id, by_id) IN
			(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?))`,
			kind, list); err != nil {
			return fmt.Errorf("write allowed %ss: remove %d: %w", kind, len(rows), err)
		}
	}
	if kept == len(want) {
		return nil
	}
	var next int64
	if err := q.QueryRowContext(ctx, "SELECT COALESCE(MAX(position), -1) + 1 FROM allowed WHERE kind = ?", kind).Scan(&next); err != nil {
		return fmt.Errorf("write allowed %ss: %w", kind, err)
	}
	return insertAllowed(ctx, q, kind, next, want[kept:])
}

// insertAllowed appends principals at positions from, from+1, ... in one
// statement.
func insertAllowed(ctx context.Context, q querier, kind string, from int64, prs []policy.Principal) error {
	if len(prs) == 0 {
		return nil
	}
	list, err := principalsJSON(prs)
	if err != nil {
		return err
	}
	if _, err := q.ExecContext(ctx, `INSERT INTO allowed (kind, position, name, id, by_id, rate)
		SELECT ?, ? + key, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(?)`,
		kind, from, list); err != nil {
		return fmt.Errorf("write allowed %ss: add %d: %w", kind, len(prs), err)
	}
	return nil
}

// principalsJSON encodes principals as [[name, id, by_id, rate], ...] for
// json_each.
func principalsJSON(prs []policy.Principal) (string, error) {
	rows := make([][4]any, len(prs))
	for i, pr := range prs {
		rows[i] = [4]any{pr.Name, pr.ID, boolInt(pr.ByID), pr.Rate.String()}
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return "", fmt.Errorf("encode allowed principals: %w", err)
	}
	return string(b), nil
}

// removedThenAppended reports whether want is was with some entries removed
// and others appended: then gone are the indexes in was of the removed ones
// and want[kept:] the appended ones.
func removedThenAppended(was, want []policy.Principal) (gone []int, kept int, ok bool) {
	wanted := make(map[policy.Principal]bool, len(want))
	for _, pr := range want {
		wanted[pr] = true
	}
	for i, pr := range was {
		switch {
		case kept < len(want) && want[kept] == pr:
			kept++
		case !wanted[pr]:
			gone = append(gone, i)
		default:
			return nil, 0, false // reordered
		}
	}
	return gone, kept, true
}

// AppendAudit writes an audit record inside the transaction.
func (t *Tx) AppendAudit(ctx context.Context, r AuditRecord) error {
	return appendAudit(ctx, t.tx, r)
}

// AppendAudit writes an audit record on its own, for operations that failed
// and so have no transaction to ride in.
func (s *Store) AppendAudit(ctx context.Context, r AuditRecord) error {
	return appendAudit(ctx, s.db, r)
}

// isBusy reports whether SQLite said the database is locked by another
// connection.
func isBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_BUSY || se.Code()&0xff == sqlite3.SQLITE_LOCKED
	}
	return false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
