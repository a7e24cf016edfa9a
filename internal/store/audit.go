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
}

// Audit returns audit records, newest first.
func (s *Store) Audit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, actor, source, remote, operation, detail, before, after, outcome
		FROM audit WHERE at >= ? ORDER BY id DESC LIMIT ?`, f.Since.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var r AuditRecord
		var at int64
		if err := rows.Scan(&r.ID, &at, &r.Actor, &r.Source, &r.Remote, &r.Operation, &r.Detail, &r.Before, &r.After, &r.Outcome); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		r.At = time.UnixMilli(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}
