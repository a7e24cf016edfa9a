package daemon

import (
	"context"
	"time"

	"github.com/smtpguard/smtpguard/internal/store"
)

// nextLookup says when a host name is due for another lookup: when its
// answer's TTL runs out, kept between a floor (so a TTL of 0 or 1 cannot make
// us hammer the resolver) and a ceiling (so a week-long TTL still notices a
// provider moving its relay); a failed lookup is retried after the floor,
// keeping the last good answer meanwhile.
func nextLookup(e store.DNSEntry, known bool, floor, ceiling time.Duration) time.Time {
	if !known {
		return time.Time{} // never looked up: due now
	}
	if e.Error != "" {
		return e.CheckedAt.Add(floor)
	}
	return e.CheckedAt.Add(min(max(e.TTL, floor), ceiling))
}

// dnsLoop keeps exception host names resolved. Its schedule is derived from
// the store alone, so a restart or a lookup made by the CLI needs no hand-off.
func (d *Daemon) dnsLoop(ctx context.Context) {
	tick := time.NewTicker(d.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		hosts, err := d.eng.ExceptionHosts(ctx)
		if err != nil || len(hosts) == 0 {
			continue
		}
		cache, err := d.eng.Store().DNSCache(ctx)
		if err != nil {
			continue
		}
		now := time.Now()
		for _, h := range hosts {
			entry, known := cache[h]
			if nextLookup(entry, known, d.cfg.DNSMinTTL, d.cfg.DNSMaxTTL).After(now) {
				continue
			}
			fresh, changed, err := d.eng.RefreshHost(ctx, h)
			switch {
			case err != nil:
				d.log.Warn("cannot record DNS answer", "host", h, "err", err)
			case fresh.Error != "":
				d.log.Warn("DNS lookup for an exception failed; keeping the last good addresses", "host", h, "err", fresh.Error, "addresses", fresh.Addrs)
			case changed:
				d.log.Info("exception host resolves to new addresses", "host", h, "addresses", fresh.Addrs, "ttl", fresh.TTL)
				d.Kick()
			}
		}
	}
}
