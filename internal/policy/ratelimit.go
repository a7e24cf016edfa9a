package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// RateSetting is an allowance's own rate limit: unset follows the policy's
// default (Policy.RateLimit), set means Rate (the zero Rate: no limit, even
// when a default exists).
type RateSetting struct {
	Set  bool
	Rate Rate
}

// String is "" when unset, else the rate as ParseRate reads it ("5/m", "off").
func (s RateSetting) String() string {
	if !s.Set {
		return ""
	}
	return s.Rate.String()
}

// ParseRateSetting reads what --rate and the policy files take: "N/PERIOD",
// "off" (no limit for this allowance, whatever the default) or "" and
// "default" (follow the default).
func ParseRateSetting(s string) (RateSetting, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "default":
		return RateSetting{}, nil
	}
	r, err := ParseRate(s)
	if err != nil {
		return RateSetting{}, fmt.Errorf("%w; or default, to follow 'smtpguard set rate-limit'", err)
	}
	return RateSetting{Set: true, Rate: r}, nil
}

// Tighter reports whether a lets fewer connections through than b over
// time: the lower sustained rate, and at the same rate the smaller burst.
// The zero Rate (no limit) is the loosest of all.
func (a Rate) Tighter(b Rate) bool {
	switch {
	case a.IsZero():
		return false
	case b.IsZero():
		return true
	}
	// Count/Period compared as Count*other Period, in whole seconds: at most
	// 1,000,000 * 86,400, far inside 64 bits.
	l := uint64(a.Count) * uint64(b.Period.Seconds())
	r := uint64(b.Count) * uint64(a.Period.Seconds())
	if l != r {
		return l < r
	}
	return a.Count < b.Count
}

// rateLimits computes each uid's limit, in this order:
//  1. root and the system users (MTA, list manager) are never limited;
//  2. a uid allowed as a user by its own allowance takes that allowance's
//     rate when it has one set ("off" included);
//  3. otherwise the tightest rate set on any allowed group or exception that
//     covers the uid ("off" ones count only when all of them say off);
//  4. otherwise the policy's default rate limit.
//
// A uid covered by no allowance and no exception gets no entry: it is refused
// anyway. The result is sorted by uid, without "no limit" entries.
func rateLimits(p Policy, dir *Directory, system []SystemUser) []UIDRate {
	never := map[uint32]bool{0: true}
	for _, s := range system {
		if a, ok := dir.User(s.Name); ok {
			never[a.UID] = true
		}
	}
	type choice struct {
		own, group RateSetting // own: the uid's user allowance; group: the tightest of the rest
		covered    bool
	}
	per := map[uint32]*choice{}
	at := func(uid uint32) *choice {
		c := per[uid]
		if c == nil {
			c = &choice{}
			per[uid] = c
		}
		c.covered = true
		return c
	}
	tighten := func(c *choice, s RateSetting) {
		switch {
		case !s.Set:
		case !c.group.Set:
			c.group = s
		case s.Rate.Tighter(c.group.Rate):
			c.group = s
		}
	}
	for _, u := range p.Users {
		uids, _ := principalUIDs(u, dir)
		for _, uid := range uids {
			c := at(uid)
			if u.Rate.Set {
				c.own = u.Rate
			}
		}
	}
	for _, g := range p.Groups {
		uids, _ := principalUIDs(g, dir)
		for _, uid := range uids {
			tighten(at(uid), g.Rate)
		}
	}
	for _, e := range p.Exceptions {
		uids, _ := principalUIDs(e.Principal, dir)
		for _, uid := range uids {
			tighten(at(uid), e.Rate)
		}
	}
	var out []UIDRate
	for uid, c := range per {
		if never[uid] || !c.covered {
			continue
		}
		r := p.RateLimit
		switch {
		case c.own.Set:
			r = c.own.Rate
		case c.group.Set:
			r = c.group.Rate
		}
		if !r.IsZero() {
			out = append(out, UIDRate{UID: uid, Rate: r})
		}
	}
	slices.SortFunc(out, func(a, b UIDRate) int { return cmp.Compare(a.UID, b.UID) })
	return out
}

// RateOf returns the limit rs puts on uid's allowed connections (zero: none).
func (rs Ruleset) RateOf(uid uint32) Rate {
	i, found := slices.BinarySearchFunc(rs.RateLimits, uid, func(r UIDRate, uid uint32) int { return cmp.Compare(r.UID, uid) })
	if !found {
		return Rate{}
	}
	return rs.RateLimits[i].Rate
}

// DistinctRates lists the different rates of rs.RateLimits, tightest first:
// backends keep one bucket table (and rule) per distinct rate, not per uid.
func (rs Ruleset) DistinctRates() []Rate {
	var out []Rate
	for _, r := range rs.RateLimits {
		if !slices.Contains(out, r.Rate) {
			out = append(out, r.Rate)
		}
	}
	slices.SortFunc(out, func(a, b Rate) int {
		switch {
		case a == b:
			return 0
		case a.Tighter(b):
			return -1
		}
		return 1
	})
	return out
}

// validRate accepts the rates ParseRate returns: a period the backends can
// express and a count they can hold.
func validRate(r Rate) bool {
	if r.IsZero() {
		return r.Period == 0
	}
	back, err := ParseRate(r.String())
	return err == nil && back == r
}
