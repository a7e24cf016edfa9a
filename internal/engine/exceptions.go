package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// lookupTimeout bounds the lookup made when an exception names a host, so a
// dead resolver cannot hang the command.
const lookupTimeout = 3 * time.Second

// AllowException lets a user or group reach one destination (host name,
// address or CIDR) on the given ports ("" for every restricted port). A host
// name that does not resolve yet is accepted and reported by status.
func (e *Engine) AllowException(ctx context.Context, actor Actor, kind policy.PrincipalKind, ref, dest, ports string) (Result, error) {
	return e.AllowExceptionWith(ctx, actor, kind, ref, dest, ports, AllowOptions{})
}

// AllowExceptionWith is AllowException with options; an existing exception
// keeps its rate limit unless opts.Rate is given.
func (e *Engine) AllowExceptionWith(ctx context.Context, actor Actor, kind policy.PrincipalKind, ref, dest, ports string, opts AllowOptions) (Result, error) {
	rate, rateText, err := opts.rate()
	if err != nil {
		return Result{}, err
	}
	d, err := policy.ParseDestination(dest)
	if err != nil {
		return Result{}, invalid(err)
	}
	var portList []uint16
	if ports != "" {
		if portList, err = policy.ParsePorts(ports); err != nil {
			return Result{}, invalid(err)
		}
	}
	var dns []store.DNSEntry
	var note string
	if d.IsHost() {
		entry := e.lookup(ctx, d.Host)
		dns = append(dns, entry)
		if entry.Error != "" {
			note = fmt.Sprintf(" (%s does not resolve yet: %s; the daemon keeps trying)", d.Host, entry.Error)
		}
	}
	detail := string(kind) + " " + ref + " --to " + d.Canonical
	if ports != "" {
		detail += " --port " + policy.PortsString(portList)
	}
	detail += rateText
	return e.change(ctx, actor, "allow exception", detail, func(p *policy.Policy, dir *policy.Directory) (string, error) {
		pr, err := dir.ResolvePrincipal(kind, ref)
		if err != nil {
			return "", invalid(err)
		}
		if err := policy.CheckExceptionPorts(portList, p.Ports); err != nil {
			return "", invalid(err)
		}
		ex := policy.Exception{Principal: pr, Destination: d.Canonical, Ports: portList, Rate: rate}
		if opts.Rate == nil {
			for _, old := range p.Exceptions {
				if old.Principal.Same(pr) && old.Destination == d.Canonical {
					ex.Rate = old.Rate // unchanged unless --rate says
				}
			}
		}
		if err := p.AddException(ex); err != nil {
			if errors.Is(err, policy.ErrAlreadyAllowed) {
				return fmt.Sprintf("%s is already allowed; nothing changed", ex), nil
			}
			return "", invalid(err)
		}
		to := "every restricted port"
		if len(portList) > 0 {
			to = "port " + policy.PortsString(portList)
		}
		limit := ""
		if ex.Rate.Set {
			limit = ", " + rateWords(ex.Rate.Rate)
		}
		return fmt.Sprintf("%s may now connect to %s on %s, and no other SMTP server%s%s", pr, d.Canonical, to, limit, note), nil
	}, dns...)
}

// RevokeException removes a principal's exception for a destination.
func (e *Engine) RevokeException(ctx context.Context, actor Actor, kind policy.PrincipalKind, ref, dest string) (Result, error) {
	d, err := policy.ParseDestination(dest)
	if err != nil {
		return Result{}, invalid(err)
	}
	return e.change(ctx, actor, "revoke exception", string(kind)+" "+ref+" --to "+d.Canonical, func(p *policy.Policy, dir *policy.Directory) (string, error) {
		pr, err := dir.ResolvePrincipal(kind, ref)
		if err != nil {
			pr = policy.Principal{Kind: kind, Name: ref} // a deleted account, by its old name
		}
		if err := p.RemoveException(pr, d.Canonical); err != nil {
			if errors.Is(err, policy.ErrNotAllowed) {
				return fmt.Sprintf("%s had no exception for %s; nothing changed", pr, d.Canonical), nil
			}
			return "", invalid(err)
		}
		return fmt.Sprintf("%s may no longer connect to %s", pr, d.Canonical), nil
	})
}

// lookup resolves a host once, for a change or a refresh.
func (e *Engine) lookup(ctx context.Context, host string) store.DNSEntry {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	now := e.cfg.Now()
	addrs, ttl, err := e.cfg.Resolver.LookupHost(ctx, host)
	if err != nil {
		return store.DNSEntry{Name: host, Error: err.Error(), CheckedAt: now}
	}
	return store.DNSEntry{Name: host, Addrs: addrs, TTL: ttl, ResolvedAt: now, CheckedAt: now}
}

// RefreshHost looks a host name up again and stores the answer; a failure
// keeps the last good addresses. It reports whether the addresses changed.
// The daemon calls it when an answer's TTL runs out.
func (e *Engine) RefreshHost(ctx context.Context, host string) (store.DNSEntry, bool, error) {
	entry := e.lookup(ctx, host)
	old, err := e.store.DNSCache(ctx)
	if err != nil {
		return entry, false, err
	}
	prev := old[host]
	if err := e.store.PutDNS(ctx, entry); err != nil {
		return entry, false, err
	}
	changed := entry.Error == "" && !sameAddrs(prev.Addrs, entry.Addrs)
	if entry.Error != "" {
		entry.Addrs, entry.ResolvedAt, entry.TTL = prev.Addrs, prev.ResolvedAt, prev.TTL
	}
	return entry, changed, nil
}

// ExceptionHosts lists the host names the stored policy's exceptions name.
func (e *Engine) ExceptionHosts(ctx context.Context) ([]string, error) {
	p, _, err := e.store.Policy(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, ex := range p.Exceptions {
		d, err := policy.ParseDestination(ex.Destination)
		if err == nil && d.IsHost() && !seen[d.Host] {
			seen[d.Host] = true
			out = append(out, d.Host)
		}
	}
	return out, nil
}

func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
