package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Hold is one hold of a uid: while it is active the uid's allowances and
// exceptions are suspended. Ended holds stay as history.
type Hold struct {
	ID    int64
	UID   uint32
	User  string
	Since time.Time
	// Until is when the hold ends by itself; zero means until released.
	Until  time.Time
	Reason string
	// By is who held: an account ("cli:root", "web:admin") or the threshold
	// ("hold-after 10/1m").
	By string
	// Count is the number of attempts behind an automatic hold.
	Count int64
	// ReleasedAt is when the hold ended by a release or its expiry (zero
	// while it has not been marked ended); ReleasedBy who released it, or
	// "expiry".
	ReleasedAt time.Time
	ReleasedBy string
}

// ActiveAt reports whether h suspends its uid at t.
func (h Hold) ActiveAt(t time.Time) bool {
	return h.ReleasedAt.IsZero() && (h.Until.IsZero() || t.Before(h.Until))
}

// HoldSettings configure automatic holds.
type HoldSettings struct {
	// After is the threshold: this many refused or rate-limited attempts of
	// one uid within the period hold it. Zero: no automatic hold.
	After policy.Rate
	// For is how long an automatic hold, or a manual one without --for,
	// lasts; zero means until released.
	For time.Duration
}

// DefaultHoldFor is how long a hold lasts unless set otherwise.
const DefaultHoldFor = time.Hour

// HoldNoticeRow is a hold start or end the daemon has not announced yet.
type HoldNoticeRow struct {
	Hold
	Ended bool // the end of the hold; otherwise its start
}

const holdColumns = `id, uid, user, since, until, reason, held_by, count, released_at, released_by`

func scanHold(sc interface{ Scan(...any) error }) (Hold, error) {
	var h Hold
	var since int64
	var until, released sql.NullInt64
	if err := sc.Scan(&h.ID, &h.UID, &h.User, &since, &until, &h.Reason, &h.By, &h.Count, &released, &h.ReleasedBy); err != nil {
		return Hold{}, err
	}
	h.Since = time.UnixMilli(since)
	if until.Valid {
		h.Until = time.UnixMilli(until.Int64)
	}
	if released.Valid {
		h.ReleasedAt = time.UnixMilli(released.Int64)
	}
	return h, nil
}

func queryHolds(ctx context.Context, q querier, where string, args ...any) ([]Hold, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+holdColumns+" FROM holds WHERE "+where+" ORDER BY since, id", args...)
	if err != nil {
		return nil, fmt.Errorf("read holds: %w", err)
	}
	defer rows.Close()
	var out []Hold
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, fmt.Errorf("read holds: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read holds: %w", err)
	}
	return out, nil
}

// activeWhere selects the holds active at the time given as its two
// parameters.
const activeWhere = "released_at IS NULL AND (until IS NULL OR until > ?)"

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func bumpHolds(ctx context.Context, q querier) error {
	if _, err := q.ExecContext(ctx, "UPDATE hold_settings SET revision = revision + 1 WHERE id = 1"); err != nil {
		return fmt.Errorf("bump holds revision: %w", err)
	}
	return nil
}

// ActiveHolds returns the holds active at now, oldest first.
func (s *Store) ActiveHolds(ctx context.Context, now time.Time) ([]Hold, error) {
	return queryHolds(ctx, s.db, activeWhere, now.UnixMilli())
}

// ActiveHolds reads the holds active at now inside the transaction.
func (t *Tx) ActiveHolds(ctx context.Context, now time.Time) ([]Hold, error) {
	return queryHolds(ctx, t.tx, activeWhere, now.UnixMilli())
}

// HoldHistory returns every hold of uid that started at or after since,
// ended or not, oldest first.
func (s *Store) HoldHistory(ctx context.Context, uid uint32, since time.Time) ([]Hold, error) {
	return queryHolds(ctx, s.db, "uid = ? AND since >= ?", uid, since.UnixMilli())
}

// HoldHistory is Store.HoldHistory inside the transaction.
func (t *Tx) HoldHistory(ctx context.Context, uid uint32, since time.Time) ([]Hold, error) {
	return queryHolds(ctx, t.tx, "uid = ? AND since >= ?", uid, since.UnixMilli())
}

// InsertHold stores a new hold and returns its id.
func (t *Tx) InsertHold(ctx context.Context, h Hold) (int64, error) {
	res, err := t.tx.ExecContext(ctx, `INSERT INTO holds (uid, user, since, until, reason, held_by, count)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, h.UID, h.User, h.Since.UnixMilli(), nullTime(h.Until), h.Reason, h.By, h.Count)
	if err != nil {
		return 0, fmt.Errorf("store hold of uid %d: %w", h.UID, err)
	}
	if err := bumpHolds(ctx, t.tx); err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// ReleaseHolds ends uid's holds active at at, and returns them as released.
func (t *Tx) ReleaseHolds(ctx context.Context, uid uint32, at time.Time, by string) ([]Hold, error) {
	held, err := queryHolds(ctx, t.tx, "uid = ? AND "+activeWhere, uid, at.UnixMilli())
	if err != nil || len(held) == 0 {
		return nil, err
	}
	if _, err := t.tx.ExecContext(ctx, "UPDATE holds SET released_at = ?, released_by = ? WHERE uid = ? AND "+activeWhere,
		at.UnixMilli(), by, uid, at.UnixMilli()); err != nil {
		return nil, fmt.Errorf("release holds of uid %d: %w", uid, err)
	}
	for i := range held {
		held[i].ReleasedAt, held[i].ReleasedBy = at, by
	}
	return held, bumpHolds(ctx, t.tx)
}

// ExpireHolds marks the holds whose time ran out by now as ended at their
// end, released by "expiry", and returns them.
func (t *Tx) ExpireHolds(ctx context.Context, now time.Time) ([]Hold, error) {
	const where = "released_at IS NULL AND until IS NOT NULL AND until <= ?"
	expired, err := queryHolds(ctx, t.tx, where, now.UnixMilli())
	if err != nil || len(expired) == 0 {
		return nil, err
	}
	if _, err := t.tx.ExecContext(ctx, "UPDATE holds SET released_at = until, released_by = 'expiry' WHERE "+where, now.UnixMilli()); err != nil {
		return nil, fmt.Errorf("expire holds: %w", err)
	}
	for i := range expired {
		expired[i].ReleasedAt, expired[i].ReleasedBy = expired[i].Until, "expiry"
	}
	return expired, bumpHolds(ctx, t.tx)
}

// TakeHoldNotices returns the hold starts and ends not announced yet (starts
// before ends, oldest first) and marks them announced.
func (t *Tx) TakeHoldNotices(ctx context.Context) ([]HoldNoticeRow, error) {
	var out []HoldNoticeRow
	starts, err := queryHolds(ctx, t.tx, "announced_start = 0")
	if err != nil {
		return nil, err
	}
	for _, h := range starts {
		out = append(out, HoldNoticeRow{Hold: h})
	}
	ends, err := queryHolds(ctx, t.tx, "announced_end = 0 AND released_at IS NOT NULL")
	if err != nil {
		return nil, err
	}
	for _, h := range ends {
		out = append(out, HoldNoticeRow{Hold: h, Ended: true})
	}
	if len(out) == 0 {
		return nil, nil
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE holds SET announced_start = 1,
		announced_end = CASE WHEN released_at IS NOT NULL THEN 1 ELSE announced_end END
		WHERE announced_start = 0 OR (announced_end = 0 AND released_at IS NOT NULL)`); err != nil {
		return nil, fmt.Errorf("mark hold notices announced: %w", err)
	}
	return out, nil
}

// HoldSettings returns the automatic hold's settings.
func (s *Store) HoldSettings(ctx context.Context) (HoldSettings, error) {
	return readHoldSettings(ctx, s.db)
}

// HoldSettings reads the automatic hold's settings inside the transaction.
func (t *Tx) HoldSettings(ctx context.Context) (HoldSettings, error) {
	return readHoldSettings(ctx, t.tx)
}

func readHoldSettings(ctx context.Context, q querier) (HoldSettings, error) {
	var count, periodMS, forMS int64
	err := q.QueryRowContext(ctx, "SELECT after_count, after_period_ms, for_ms FROM hold_settings WHERE id = 1").Scan(&count, &periodMS, &forMS)
	if err == sql.ErrNoRows {
		return HoldSettings{For: DefaultHoldFor}, nil
	}
	if err != nil {
		return HoldSettings{}, fmt.Errorf("read hold settings: %w", err)
	}
	hs := HoldSettings{For: time.Duration(forMS) * time.Millisecond}
	if count > 0 {
		hs.After = policy.Rate{Count: uint32(count), Period: time.Duration(periodMS) * time.Millisecond}
	}
	return hs, nil
}

// PutHoldSettings stores the automatic hold's settings.
func (t *Tx) PutHoldSettings(ctx context.Context, hs HoldSettings) error {
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO hold_settings (id, after_count, after_period_ms, for_ms) VALUES (1, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET after_count = excluded.after_count, after_period_ms = excluded.after_period_ms, for_ms = excluded.for_ms`,
		hs.After.Count, hs.After.Period.Milliseconds(), hs.For.Milliseconds()); err != nil {
		return fmt.Errorf("store hold settings: %w", err)
	}
	return bumpHolds(ctx, t.tx)
}

// HoldsRevision changes whenever a hold starts, is released or expires, or
// the hold settings change: the daemon polls it as it polls the policy's.
func (s *Store) HoldsRevision(ctx context.Context) (int64, error) {
	var rev int64
	err := s.db.QueryRowContext(ctx, "SELECT revision FROM hold_settings WHERE id = 1").Scan(&rev)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read holds revision: %w", err)
	}
	return rev, nil
}
