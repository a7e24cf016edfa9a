package store

import (
	"context"
	"fmt"
	"time"
)

// AuditRecord is one entry of the audit log.
type AuditRecord struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`            // "root", "web:alice", "api:deploy"
	Source    string    `json:"source"`           // "cli", "web", "api", "daemon"
	Remote    string    `json:"remote,omitempty"` // client address for web and API
	Operation string    `json:"operation"`        // "enable", "allow", "set ports", ...
	Detail    string    `json:"detail,omitempty"` // "user alice", "25,465,587"
	Before    string    `json:"before,omitempty"` // policy before, as JSON
	After     string    `json:"after,omitempty"`
	Outcome   string    `json:"outcome"` // "ok", or the error that undid the change
}

func appendAudit(ctx context.Context, q querier, r AuditRecord) error {
	_, err := q.ExecContext(ctx, `INSERT INTO audit (at, actor, source, remote, operation, detail, before, after, outcome)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.At.UnixMilli(), r.Actor, r.Source, r.Remote, r.Operation, r.Detail, r.Before, r.After, r.Outcome)
	if err != nil {
		return fmt.Errorf("write audit record: %w", err)
	}
	return nil
}

// AuditFilter narrows an audit query.
type AuditFilter struct {
	Since time.Time // zero: from the beginning
	Limit int       // zero: no limit
	After string    // the Next of a previous page: the older records that follow it
	// ActorPrefix keeps records whose actor starts with it ("web:" for every
	// web account); Operation keeps one operation exactly ("allow").
	ActorPrefix string
	Operation   string
}

// Audit returns audit records, newest first.
func (s *Store) Audit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	recs, _, err := s.AuditPage(ctx, f)
	return recs, err
}

// auditKey is where a record stands in the order pages follow: ids only
// grow, so new records never enter a page already being followed.
type auditKey struct {
	ID int64 `json:"i"`
}

// AuditPage returns up to f.Limit records older than f.After, newest first,
// and the cursor of the next page ("" when there is none).
func (s *Store) AuditPage(ctx context.Context, f AuditFilter) ([]AuditRecord, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = -1
	} else {
		limit++
	}
	where, args := "at >= ?", []any{f.Since.UnixMilli()}
	if f.ActorPrefix != "" {
		where += " AND substr(actor, 1, ?) = ?"
		args = append(args, len(f.ActorPrefix), f.ActorPrefix)
	}
	if f.Operation != "" {
		where += " AND operation = ?"
		args = append(args, f.Operation)
	}
	if f.After != "" {
		var k auditKey
		if err := decodeCursor(f.After, &k); err != nil {
			return nil, "", err
		}
		where += " AND id < ?"
		args = append(args, k.ID)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, actor, source, remote, operation, detail, before, after, outcome
		FROM audit WHERE `+where+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, "", fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		if f.Limit > 0 && len(out) == f.Limit {
			next, err := encodeCursor(auditKey{out[len(out)-1].ID})
			return out, next, err
		}
		var r AuditRecord
		var at int64
		if err := rows.Scan(&r.ID, &at, &r.Actor, &r.Source, &r.Remote, &r.Operation, &r.Detail, &r.Before, &r.After, &r.Outcome); err != nil {
			return nil, "", fmt.Errorf("read audit log: %w", err)
		}
		r.At = time.UnixMilli(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("read audit log: %w", err)
	}
	return out, "", nil
}
