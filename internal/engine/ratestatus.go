package engine

import (
	"context"
	"maps"
	"slices"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// RateLimitStatus is one uid's rate limit, as the policy's precedence makes
// it (its own allowance, else the tightest group or exception, else the
// default).
type RateLimitStatus struct {
	UID  uint32 `json:"uid"`
	User string `json:"user,omitempty"`
	Rate string `json:"rate"`
}

// AllowedCount is how many connections to restricted ports the backend let
// through for one uid since its rules were installed.
type AllowedCount struct {
	UID   uint32 `json:"uid"`
	User  string `json:"user,omitempty"`
	Count uint64 `json:"count"`
}

// rateStatus fills the rate limits and, when the backend counts them and the
// restriction is enabled, the allowed connections of st.
func (e *Engine) rateStatus(ctx context.Context, st *Status, p policy.Policy, res policy.Resolution, dir *policy.Directory) {
	st.RateLimit = p.RateLimit.String()
	st.UserRates, st.GroupRates = ownRates(p.Users), ownRates(p.Groups)
	st.RateLimits = []RateLimitStatus{}
	for _, r := range res.RateLimits {
		rl := RateLimitStatus{UID: r.UID, Rate: r.Rate.String()}
		if a, ok := dir.UserByID(r.UID); ok {
			rl.User = a.Name
		}
		st.RateLimits = append(st.RateLimits, rl)
	}
	st.AllowedConnections = []AllowedCount{}
	if !p.Enabled {
		return
	}
	counts, err := e.AllowedConnections(ctx, p.Backend)
	if err != nil {
		return // not counted by this backend, or not readable now: no counts
	}
	for _, uid := range slices.Sorted(maps.Keys(counts)) {
		c := AllowedCount{UID: uid, Count: counts[uid]}
		if a, ok := dir.UserByID(uid); ok {
			c.User = a.Name
		}
		st.AllowedConnections = append(st.AllowedConnections, c)
	}
}

// AllowedConnections reads the named backend's per-uid counts of allowed
// connections; enforce.ErrNotSupported when it keeps none.
func (e *Engine) AllowedConnections(ctx context.Context, backend string) (map[uint32]uint64, error) {
	b, err := e.backend(backend)
	if err != nil {
		return nil, err
	}
	ac, ok := b.(enforce.AllowedCounter)
	if !ok {
		return nil, enforce.ErrNotSupported
	}
	return ac.AllowedConnections(ctx)
}

// rateLimitViews names rs's rate limits with the users res knows.
func rateLimitViews(rs policy.Ruleset, res policy.Resolution) []RateLimitStatus {
	names := make(map[uint32]string, len(res.Grants))
	for _, g := range res.Grants {
		names[g.UID] = g.User
	}
	out := []RateLimitStatus{}
	for _, r := range rs.RateLimits {
		out = append(out, RateLimitStatus{UID: r.UID, User: names[r.UID], Rate: r.Rate.String()})
	}
	return out
}

// ownRates maps the principals with a rate limit of their own to it.
func ownRates(prs []policy.Principal) map[string]string {
	out := map[string]string{}
	for _, pr := range prs {
		if pr.Rate.Set {
			out[pr.Ref()] = pr.Rate.String()
		}
	}
	return out
}
