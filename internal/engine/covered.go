package engine

import (
	"context"
	"net/netip"
	"slices"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Covered reports, for each attempt, whether the stored policy lets that uid
// through to that destination and port now: the uid is allowed (itself or by
// a group), or an exception covers the address and port. Pages use it to stop
// offering "allow" for what is already allowed. Host-name exceptions count
// with their last good answers; the MTA's own users are not looked up (their
// attempts are never recorded).
func (e *Engine) Covered(ctx context.Context, evs []EventView) ([]bool, error) {
	out := make([]bool, len(evs))
	if len(evs) == 0 {
		return out, nil
	}
	p, _, err := e.store.Policy(ctx)
	if err != nil {
		return nil, err
	}
	v, err := e.currentView(ctx)
	if err != nil {
		return nil, err
	}
	res := policy.Resolve(p, v.dir, nil)
	rules, _ := policy.ResolveExceptions(p, v.dir, func(host string) ([]netip.Addr, bool) {
		entry, ok := v.dns[host]
		return entry.Addrs, ok && len(entry.Addrs) > 0
	})
	for i, ev := range evs {
		if _, held := slices.BinarySearch(v.held, ev.UID); held {
			continue // on hold: refused now whatever the policy allows
		}
		if _, ok := slices.BinarySearch(res.UIDs, ev.UID); ok {
			out[i] = true
			continue
		}
		addr, err := netip.ParseAddr(ev.Address)
		if err != nil {
			continue // folded: no one address to cover
		}
		addr = addr.Unmap()
		for _, r := range rules {
			if r.UID == ev.UID && r.Port == ev.Port && r.Dst.Contains(addr) {
				out[i] = true
				break
			}
		}
	}
	return out, nil
}
