package policy

import "slices"

// WithoutUIDs returns a copy of rs in which the given uids are ordinary users:
// no full allowance, no exceptions, no rate limit. It is how a hold suspends
// a uid's allowances without touching the stored policy, so releasing the
// hold restores exactly what the policy says.
func (rs Ruleset) WithoutUIDs(uids []uint32) Ruleset {
	out := rs.Clone()
	if len(uids) == 0 {
		return out
	}
	gone := func(uid uint32) bool { return slices.Contains(uids, uid) }
	out.UIDs = slices.DeleteFunc(out.UIDs, gone)
	out.Exceptions = slices.DeleteFunc(out.Exceptions, func(x ExceptionRule) bool { return gone(x.UID) })
	out.RateLimits = slices.DeleteFunc(out.RateLimits, func(r UIDRate) bool { return gone(r.UID) })
	return out
}
