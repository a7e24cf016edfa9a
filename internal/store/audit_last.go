package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// LastAudit returns the newest audit record of one operation written at or
// after since, and whether there is one. since bounds the search (by the
// audit_at index) on a long audit log.
func (s *Store) LastAudit(ctx context.Context, operation string, since time.Time) (AuditRecord, bool, error) {
	var r AuditRecord
	var at int64
	err := s.db.QueryRowContext(ctx, `SELECT id, at, actor, source, remote, operation, detail, before, after, outcome
		FROM audit WHERE at >= ? AND operation = ? ORDER BY id DESC LIMIT 1`, since.UnixMilli(), operation).
		Scan(&r.ID, &at, &r.Actor, &r.Source, &r.Remote, &r.Operation, &r.Detail, &r.Before, &r.After, &r.Outcome)
	if errors.Is(err, sql.ErrNoRows) {
		return AuditRecord{}, false, nil
	}
	if err != nil {
		return AuditRecord{}, false, fmt.Errorf("read the last %q record of the audit log: %w", operation, err)
	}
	r.At = time.UnixMilli(at)
	return r, true, nil
}
