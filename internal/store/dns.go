package store

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// DNSEntry is the cached answer for one exception host name.
type DNSEntry struct {
	Name       string        `json:"name"`
	Addrs      []netip.Addr  `json:"addresses"`
	TTL        time.Duration `json:"-"`
	ResolvedAt time.Time     `json:"resolved_at"` // of the last good answer; zero if never
	Error      string        `json:"error,omitempty"`
	CheckedAt  time.Time     `json:"checked_at"`
}

// DNSCache returns every cached answer, by name.
func (s *Store) DNSCache(ctx context.Context) (map[string]DNSEntry, error) {
	return readDNS(ctx, s.db)
}

// DNSCache reads the cache inside the transaction.
func (t *Tx) DNSCache(ctx context.Context) (map[string]DNSEntry, error) {
	return readDNS(ctx, t.tx)
}

func readDNS(ctx context.Context, q querier) (map[string]DNSEntry, error) {
	rows, err := q.QueryContext(ctx, "SELECT name, addrs, ttl_ms, resolved_at, error, checked_at FROM dns_cache")
	if err != nil {
		return nil, fmt.Errorf("read DNS cache: %w", err)
	}
	defer rows.Close()
	out := map[string]DNSEntry{}
	for rows.Next() {
		var e DNSEntry
		var addrs string
		var ttl, resolved, checked int64
		if err := rows.Scan(&e.Name, &addrs, &ttl, &resolved, &e.Error, &checked); err != nil {
			return nil, fmt.Errorf("read DNS cache: %w", err)
		}
		for a := range strings.SplitSeq(addrs, ",") {
			if ip, err := netip.ParseAddr(a); err == nil {
				e.Addrs = append(e.Addrs, ip)
			}
		}
		e.TTL = time.Duration(ttl) * time.Millisecond
		if resolved > 0 {
			e.ResolvedAt = time.UnixMilli(resolved)
		}
		if checked > 0 {
			e.CheckedAt = time.UnixMilli(checked)
		}
		out[e.Name] = e
	}
	return out, rows.Err()
}

// PutDNS records a lookup. A failed lookup (Error set) keeps the last good
// addresses, so enforcement does not change while DNS is down.
func (s *Store) PutDNS(ctx context.Context, e DNSEntry) error { return putDNS(ctx, s.db, e) }

// PutDNS records a lookup inside the transaction.
func (t *Tx) PutDNS(ctx context.Context, e DNSEntry) error { return putDNS(ctx, t.tx, e) }

func putDNS(ctx context.Context, q querier, e DNSEntry) error {
	var err error
	if e.Error != "" {
		_, err = q.ExecContext(ctx, `INSERT INTO dns_cache (name, error, checked_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET error = excluded.error, checked_at = excluded.checked_at`,
			e.Name, e.Error, e.CheckedAt.UnixMilli())
	} else {
		addrs := make([]string, len(e.Addrs))
		for i, a := range e.Addrs {
			addrs[i] = a.String()
		}
		_, err = q.ExecContext(ctx, `INSERT INTO dns_cache (name, addrs, ttl_ms, resolved_at, error, checked_at) VALUES (?, ?, ?, ?, '', ?)
			ON CONFLICT (name) DO UPDATE SET addrs = excluded.addrs, ttl_ms = excluded.ttl_ms,
				resolved_at = excluded.resolved_at, error = '', checked_at = excluded.checked_at`,
			e.Name, strings.Join(addrs, ","), e.TTL.Milliseconds(), e.ResolvedAt.UnixMilli(), e.CheckedAt.UnixMilli())
	}
	if err != nil {
		return fmt.Errorf("cache DNS answer for %s: %w", e.Name, err)
	}
	return nil
}
