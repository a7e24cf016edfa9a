// Package resolve looks up exception host names with their DNS time-to-live,
// which the standard library's resolver does not report. It reads /etc/hosts
// first, then asks the nameservers of /etc/resolv.conf (or configured ones) for
// A and AAAA records over UDP.
package resolve

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ErrNoAddresses means the name exists in no source, or has no A/AAAA records.
var ErrNoAddresses = errors.New("no addresses")

// Resolver looks up host names. The zero value reads /etc/hosts and
// /etc/resolv.conf.
type Resolver struct {
	HostsPath  string        // default /etc/hosts
	ResolvConf string        // default /etc/resolv.conf
	Servers    []string      // "ip:port"; overrides ResolvConf
	Timeout    time.Duration // per query, default 2s
}

// LookupHost returns the host's addresses and the smallest TTL among the
// answers. A hosts-file entry has no TTL (0): the caller picks its own period.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if addrs := r.fromHosts(host); len(addrs) > 0 {
		return addrs, 0, nil
	}
	servers := r.Servers
	if len(servers) == 0 {
		servers = r.resolvConfServers()
	}
	var lastErr error
	for _, srv := range servers {
		var addrs []netip.Addr
		ttl := time.Duration(-1)
		var errs []error
		for _, qt := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
			a, t, err := r.query(ctx, srv, host, qt)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			addrs = append(addrs, a...)
			if len(a) > 0 && (ttl < 0 || t < ttl) {
				ttl = t
			}
		}
		if len(addrs) > 0 {
			slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
			return slices.Compact(addrs), ttl, nil
		}
		if len(errs) == 2 {
			// Usually the same failure twice (A and AAAA): say it once, on one line.
			lastErr = errs[0]
			if errs[1].Error() != errs[0].Error() {
				lastErr = fmt.Errorf("%w; %w", errs[0], errs[1])
			}
			continue // server failed both queries: try the next
		}
		return nil, 0, fmt.Errorf("resolve %s: %w", host, ErrNoAddresses)
	}
	if lastErr == nil {
		lastErr = errors.New("no nameserver configured")
	}
	return nil, 0, fmt.Errorf("resolve %s: %w", host, lastErr)
}

func (r *Resolver) fromHosts(host string) []netip.Addr {
	path := r.HostsPath
	if path == "" {
		path = "/etc/hosts"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		for _, name := range fields[1:] {
			if strings.ToLower(name) == host {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

func (r *Resolver) resolvConfServers() []string {
	path := r.ResolvConf
	if path == "" {
		path = "/etc/resolv.conf"
	}
	f, err := os.Open(path)
	if err != nil {
		return []string{"127.0.0.1:53"}
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				out = append(out, netip.AddrPortFrom(a, 53).String())
			}
		}
	}
	if len(out) == 0 {
		return []string{"127.0.0.1:53"}
	}
	return out
}

// query asks one server for one record type.
func (r *Resolver) query(ctx context.Context, server, host string, qt dnsmessage.Type) ([]netip.Addr, time.Duration, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name, err := dnsmessage.NewName(host + ".")
	if err != nil {
		return nil, 0, fmt.Errorf("invalid host name %q: %w", host, err)
	}
	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: name, Type: qt, Class: dnsmessage.ClassINET}},
	}
	packed, err := msg.Pack()
	if err != nil {
		return nil, 0, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return nil, 0, fmt.Errorf("query %s: %w", server, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(packed); err != nil {
		return nil, 0, fmt.Errorf("query %s: %w", server, err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, 0, fmt.Errorf("query %s: %w", server, err)
		}
		var resp dnsmessage.Message
		if err := resp.Unpack(buf[:n]); err != nil || resp.ID != id || !resp.Response {
			continue // not our answer; keep waiting until the deadline
		}
		if resp.RCode == dnsmessage.RCodeNameError {
			return nil, 0, nil // NXDOMAIN: a definite "no"
		}
		if resp.RCode != dnsmessage.RCodeSuccess {
			return nil, 0, fmt.Errorf("query %s: server answered %s", server, resp.RCode)
		}
		var addrs []netip.Addr
		ttl := time.Duration(-1)
		for _, ans := range resp.Answers {
			var a netip.Addr
			switch body := ans.Body.(type) {
			case *dnsmessage.AResource:
				a = netip.AddrFrom4(body.A)
			case *dnsmessage.AAAAResource:
				a = netip.AddrFrom16(body.AAAA).Unmap()
			default:
				continue // CNAMEs: the recursive server already followed them
			}
			addrs = append(addrs, a)
			if t := time.Duration(ans.Header.TTL) * time.Second; ttl < 0 || t < ttl {
				ttl = t
			}
		}
		return addrs, max(ttl, 0), nil
	}
}
