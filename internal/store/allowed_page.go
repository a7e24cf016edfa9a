package store

import (
	"context"
	"fmt"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// AllowedPage is one page of the allowed list: users, then groups, then
// exceptions, each in the order they were added.
type AllowedPage struct {
	Users      []policy.Principal
	Groups     []policy.Principal
	Exceptions []policy.Exception
}

// allowedKey is where a page of the allowed list ended: a section (users,
// groups, exceptions) and a stored position. Positions of users and groups
// only grow as principals are added, so a cursor stays valid while others
// are allowed or revoked (a reordering import renumbers them).
type allowedKey struct {
	Section  int   `json:"s"`
	Position int64 `json:"p"`
}

const (
	sectionUsers = iota
	sectionGroups
	sectionExceptions
)

// AllowedPage reads up to limit entries (all when limit <= 0) of the allowed
// list after the cursor after ("" for the start), and the cursor of the next
// page ("" when there is none).
func (s *Store) AllowedPage(ctx context.Context, after string, limit int) (AllowedPage, string, error) {
	k := allowedKey{Section: sectionUsers, Position: -1}
	if after != "" {
		if err := decodeCursor(after, &k); err != nil {
			return AllowedPage{}, "", err
		}
		if k.Section < sectionUsers || k.Section > sectionExceptions {
			return AllowedPage{}, "", ErrBadCursor
		}
	}
	var page AllowedPage
	var lastKey allowedKey
	left := -1 // rows still wanted, counting one more than limit to learn if there are more
	if limit > 0 {
		left = limit + 1
	}
	taken := 0
	for sec := k.Section; sec <= sectionExceptions && left != 0; sec++ {
		from := int64(-1)
		if sec == k.Section {
			from = k.Position
		}
		var positions []int64
		var err error
		switch sec {
		case sectionUsers:
			page.Users, positions, err = s.allowedAfter(ctx, policy.KindUser, from, left)
		case sectionGroups:
			page.Groups, positions, err = s.allowedAfter(ctx, policy.KindGroup, from, left)
		case sectionExceptions:
			page.Exceptions, positions, err = readExceptionsAfter(ctx, s.db, from, left)
		}
		if err != nil {
			return AllowedPage{}, "", err
		}
		for _, pos := range positions {
			if limit > 0 && taken == limit {
				// The extra row: there is a next page, starting after the last kept.
				trim(&page, sec)
				next, err := encodeCursor(lastKey)
				return page, next, err
			}
			taken++
			lastKey = allowedKey{Section: sec, Position: pos}
		}
		if left > 0 {
			left -= len(positions)
		}
	}
	return page, "", nil
}

// trim drops the extra row read from section sec.
func trim(p *AllowedPage, sec int) {
	switch sec {
	case sectionUsers:
		p.Users = p.Users[:len(p.Users)-1]
	case sectionGroups:
		p.Groups = p.Groups[:len(p.Groups)-1]
	case sectionExceptions:
		p.Exceptions = p.Exceptions[:len(p.Exceptions)-1]
	}
}

// allowedAfter reads up to limit principals of one kind (all when negative)
// after a position, with their positions.
func (s *Store) allowedAfter(ctx context.Context, kind policy.PrincipalKind, after int64, limit int) ([]policy.Principal, []int64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT position, name, id, by_id, rate FROM allowed WHERE kind = ? AND position > ? ORDER BY position LIMIT ?",
		string(kind), after, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("read allowed %ss: %w", kind, err)
	}
	defer rows.Close()
	var out []policy.Principal
	var positions []int64
	for rows.Next() {
		pr := policy.Principal{Kind: kind}
		var pos int64
		var byID int
		var rate string
		if err := rows.Scan(&pos, &pr.Name, &pr.ID, &byID, &rate); err != nil {
			return nil, nil, fmt.Errorf("read allowed %ss: %w", kind, err)
		}
		pr.ByID = byID != 0
		if pr.Rate, err = policy.ParseRateSetting(rate); err != nil {
			return nil, nil, fmt.Errorf("read allowed %s: stored rate: %w", pr, err)
		}
		out = append(out, pr)
		positions = append(positions, pos)
	}
	return out, positions, rows.Err()
}
