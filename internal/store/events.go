package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Event is one aggregate of blocked (or, in log mode, logged) connection
// attempts: one uid to one destination and port within one minute.
type Event struct {
	UID       uint32    `json:"uid"`
	User      string    `json:"user"`
	Family    int       `json:"family"` // 4 or 6
	Address   string    `json:"destination"`
	Port      uint16    `json:"port"`
	Action    string    `json:"action"` // "blocked" or "logged"
	Count     int64     `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Process

	// Ref is the reference the explain responder quoted to the client
	// ("" when none was), for "events --ref".
	Ref string `json:"ref"`
}

// Process is the process that made an aggregate's last attempt with one
// known, as far as the backend and /proc told; empty (0) where unknown: the
// nft backend never knows the pid.
type Process struct {
	PID       uint32 `json:"pid"` // the process (thread group) id, as ps shows it
	Comm      string `json:"comm"`
	Exe       string `json:"exe"`
	Cmdline   string `json:"cmdline"`
	Cwd       string `json:"cwd"`
	Cgroup    string `json:"cgroup"`
	Unit      string `json:"unit"`
	Container string `json:"container"`
	Pool      string `json:"pool"`
}

// Known reports whether anything is known of the process.
func (p Process) Known() bool { return p != Process{} }

// RecordEvents adds aggregates in one transaction, merging with aggregates
// already stored for the same uid, destination, port and minute.
func (s *Store) RecordEvents(ctx context.Context, events []Event) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	defer tx.Rollback()
	for _, e := range events {
		// The process fields are the latest known: replaced as a whole by
		// an aggregate that knows its process (?20) and is not older.
		_, err := tx.ExecContext(ctx, `INSERT INTO events (uid, user, family, daddr, dport, minute, action, count, first_seen, last_seen,
				pid, comm, exe, cmdline, cwd, cgroup, unit, container, pool, ref)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?21)
			ON CONFLICT (uid, daddr, dport, minute, action) DO UPDATE SET
				count = count + excluded.count,
				user = excluded.user,
				first_seen = min(first_seen, excluded.first_seen),
				last_seen = max(last_seen, excluded.last_seen),
				pid       = iif(?20 AND excluded.last_seen >= last_seen, excluded.pid, pid),
				comm      = iif(?20 AND excluded.last_seen >= last_seen, excluded.comm, comm),
				exe       = iif(?20 AND excluded.last_seen >= last_seen, excluded.exe, exe),
				cmdline   = iif(?20 AND excluded.last_seen >= last_seen, excluded.cmdline, cmdline),
				cwd       = iif(?20 AND excluded.last_seen >= last_seen, excluded.cwd, cwd),
				cgroup    = iif(?20 AND excluded.last_seen >= last_seen, excluded.cgroup, cgroup),
				unit      = iif(?20 AND excluded.last_seen >= last_seen, excluded.unit, unit),
				container = iif(?20 AND excluded.last_seen >= last_seen, excluded.container, container),
				pool      = iif(?20 AND excluded.last_seen >= last_seen, excluded.pool, pool),
				ref       = iif(excluded.ref != '', excluded.ref, ref)`,
			[]any{e.UID, e.User, e.Family, e.Address, e.Port, e.FirstSeen.Unix() / 60, e.Action, e.Count,
				e.FirstSeen.UnixMilli(), e.LastSeen.UnixMilli(),
				e.PID, e.Comm, e.Exe, e.Cmdline, e.Cwd, e.Cgroup, e.Unit, e.Container, e.Pool, e.Known(), e.Ref}...)
		if err != nil {
			return fmt.Errorf("record event for uid %d to %s port %d: %w", e.UID, e.Address, e.Port, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	return nil
}

// EventFilter narrows an events query.
type EventFilter struct {
	Since time.Time // zero: everything kept
	Limit int       // zero: no limit
	// After is the Next of a previous page: the rows that follow it. Rows are
	// ordered by minute (newest first), then uid, destination, port and
	// action, which never change once a row exists, so following Next visits
	// every row once even while new ones arrive.
	After string
	// OnlyUsers restricts the answer to attempts by the user names in Users;
	// with OnlyUsers set and Users empty, nothing matches. A reseller sees
	// the users they own this way.
	OnlyUsers bool
	Users     []string

	// UserPrefix keeps the attempts of users whose name starts with it
	// (case-sensitive, as user names are); UID, when set, one uid exactly.
	UserPrefix string
	UID        *uint32
	// Destination keeps destinations whose text starts with it: an address,
	// "192.0.2." for a range, or a folded prefix such as "192.0.2.0/24".
	Destination string
	Port        uint16 // zero: every port
	Action      string // "": every action
	// Unit keeps the attempts whose process ran in this systemd unit
	// exactly; Container those of containers whose id (or LXC name)
	// starts with it, so docker ps's 12 digits do.
	Unit      string
	Container string
	Ref       string // "": any; else the aggregate the explain responder quoted
	// Sort is SortTime (newest minute first, the default) or SortCount (most
	// attempts first).
	Sort string
}

// The orders EventsPage can follow.
const (
	SortTime  = "time"
	SortCount = "count"
)

// Events returns aggregates, newest minute first.
func (s *Store) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	evs, _, err := s.EventsPage(ctx, f)
	return evs, err
}

// eventWhere is the WHERE clause for f's since and user filters.
func eventWhere(f EventFilter) (string, []any, error) {
	where, args := "last_seen >= ?", []any{f.Since.UnixMilli()}
	if f.OnlyUsers {
		// json_each keeps the statement the same whatever the number of users.
		users, err := json.Marshal(append([]string{}, f.Users...))
		if err != nil {
			return "", nil, fmt.Errorf("read events: %w", err)
		}
		where += " AND user IN (SELECT value FROM json_each(?))"
		args = append(args, string(users))
	}
	if f.UserPrefix != "" {
		// substr instead of LIKE: no wildcards to escape, and case-sensitive.
		where += " AND substr(user, 1, ?) = ?"
		args = append(args, len(f.UserPrefix), f.UserPrefix)
	}
	if f.UID != nil {
		where += " AND uid = ?"
		args = append(args, *f.UID)
	}
	if f.Destination != "" {
		where += " AND substr(daddr, 1, ?) = ?"
		args = append(args, len(f.Destination), f.Destination)
	}
	if f.Port != 0 {
		where += " AND dport = ?"
		args = append(args, f.Port)
	}
	if f.Action != "" {
		where += " AND action = ?"
		args = append(args, f.Action)
	}
	if f.Unit != "" {
		where += " AND unit = ?"
		args = append(args, f.Unit)
	}
	if f.Container != "" {
		where += " AND substr(container, 1, ?) = ?"
		args = append(args, len(f.Container), f.Container)
	}
	if f.Ref != "" {
		where += " AND ref = ?"
		args = append(args, f.Ref)
	}
	switch f.Sort {
	case "", SortTime, SortCount:
	default:
		return "", nil, fmt.Errorf("read events: unknown order %q: sort by %q or %q", f.Sort, SortTime, SortCount)
	}
	return where, args, nil
}

// UserSum is one uid's attempts among the events a filter selects.
type UserSum struct {
	UID          uint32
	User         string // as last recorded
	Attempts     int64
	Destinations int // distinct destination and port pairs (a folded one counts once)
}

// EventSums sums the attempts f selects (f.Limit and f.After do not apply)
// into n buckets of size from start, by last seen, and per uid. SQLite does
// the sums, so the cost in memory is the same however many rows there are.
// At most maxUsers uids are summed, those with the most attempts.
func (s *Store) EventSums(ctx context.Context, f EventFilter, start time.Time, size time.Duration, n, maxUsers int) ([]int64, []UserSum, error) {
	where, args, err := eventWhere(f)
	if err != nil {
		return nil, nil, err
	}
	buckets := make([]int64, n)
	end := start.Add(time.Duration(n) * size)
	rows, err := s.db.QueryContext(ctx, `SELECT (last_seen - ?) / ?, SUM(count) FROM events WHERE `+where+
		` AND last_seen >= ? AND last_seen < ? GROUP BY 1`,
		append([]any{start.UnixMilli(), size.Milliseconds()}, append(args, start.UnixMilli(), end.UnixMilli())...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("sum events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b, sum int64
		if err := rows.Scan(&b, &sum); err != nil {
			return nil, nil, fmt.Errorf("sum events: %w", err)
		}
		if b >= 0 && b < int64(n) {
			buckets[b] += sum
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("sum events: %w", err)
	}
	rows.Close()
	// With one max() in the list, SQLite takes the bare column user from the
	// row holding the maximum: the name last recorded.
	urows, err := s.db.QueryContext(ctx, `SELECT uid, user, max(last_seen), SUM(count), COUNT(DISTINCT daddr || ' ' || dport)
		FROM events WHERE `+where+` GROUP BY uid ORDER BY SUM(count) DESC, uid LIMIT ?`, append(args, maxUsers)...)
	if err != nil {
		return nil, nil, fmt.Errorf("sum events by user: %w", err)
	}
	defer urows.Close()
	var users []UserSum
	for urows.Next() {
		var u UserSum
		var last int64
		if err := urows.Scan(&u.UID, &u.User, &last, &u.Attempts, &u.Destinations); err != nil {
			return nil, nil, fmt.Errorf("sum events by user: %w", err)
		}
		users = append(users, u)
	}
	if err := urows.Err(); err != nil {
		return nil, nil, fmt.Errorf("sum events by user: %w", err)
	}
	return buckets, users, nil
}

// eventKey is where a row stands in the order pages follow. Count is set
// only in the count order, so a cursor of one order is refused by the other.
type eventKey struct {
	Count  *int64 `json:"c,omitempty"`
	Minute int64  `json:"m"`
	UID    uint32 `json:"u"`
	Addr   string `json:"a"`
	Port   uint16 `json:"p"`
	Action string `json:"x"`
}

// EventsPage returns up to f.Limit aggregates after f.After, and the cursor
// of the next page ("" when there is none).
func (s *Store) EventsPage(ctx context.Context, f EventFilter) ([]Event, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = -1
	} else {
		limit++ // one more tells whether there is a next page
	}
	where, args, err := eventWhere(f)
	if err != nil {
		return nil, "", err
	}
	byCount := f.Sort == SortCount
	if f.After != "" {
		var k eventKey
		if err := decodeCursor(f.After, &k); err != nil {
			return nil, "", err
		}
		if byCount != (k.Count != nil) {
			return nil, "", ErrBadCursor
		}
		// The row key (minute, uid, destination, port, action) never
		// changes. In the count order a row of the current minute can still
		// grow: it then moves up, to a page already read, so it is never
		// shown twice.
		after := "minute < ? OR (minute = ? AND (uid, daddr, dport, action) > (?, ?, ?, ?))"
		keyArgs := []any{k.Minute, k.Minute, k.UID, k.Addr, k.Port, k.Action}
		if byCount {
			after = "count < ? OR (count = ? AND (" + after + "))"
			keyArgs = append([]any{*k.Count, *k.Count}, keyArgs...)
		}
		where += " AND (" + after + ")"
		args = append(args, keyArgs...)
	}
	order := "minute DESC, uid, daddr, dport, action"
	if byCount {
		order = "count DESC, " + order
	}
	rows, err := s.db.QueryContext(ctx, `SELECT uid, user, family, daddr, dport, minute, action, count, first_seen, last_seen,
			pid, comm, exe, cmdline, cwd, cgroup, unit, container, pool, ref
		FROM events WHERE `+where+` ORDER BY `+order+` LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, "", fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var out []Event
	var last eventKey
	for rows.Next() {
		if f.Limit > 0 && len(out) == f.Limit {
			next, err := encodeCursor(last)
			return out, next, err
		}
		var e Event
		var first, lastSeen int64
		if err := rows.Scan(&e.UID, &e.User, &e.Family, &e.Address, &e.Port, &last.Minute, &e.Action, &e.Count, &first, &lastSeen,
			&e.PID, &e.Comm, &e.Exe, &e.Cmdline, &e.Cwd, &e.Cgroup, &e.Unit, &e.Container, &e.Pool, &e.Ref); err != nil {
			return nil, "", fmt.Errorf("read events: %w", err)
		}
		e.FirstSeen, e.LastSeen = time.UnixMilli(first), time.UnixMilli(lastSeen)
		last.UID, last.Addr, last.Port, last.Action = e.UID, e.Address, e.Port, e.Action
		if byCount {
			c := e.Count
			last.Count = &c
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("read events: %w", err)
	}
	return out, "", nil
}

// PruneEvents deletes aggregates last seen before the cutoff and returns how
// many went.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM events WHERE last_seen < ?", before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	return res.RowsAffected()
}
