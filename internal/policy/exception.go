package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Exception lets one user or group reach one destination on some restricted
// ports, and nothing else: the answer to "this site sends through
// smtp.sendgrid.net:587" that does not open every SMTP server in the world.
type Exception struct {
	Principal   Principal
	Destination string      // canonical: an address, a masked CIDR, or a lower-case host name
	Ports       []uint16    // sorted; empty means every restricted port
	Rate        RateSetting // its own rate limit (unset: the policy's default)
}

// String reads like the command that made it: "user alice --to smtp.example.net --port 587".
func (e Exception) String() string {
	s := e.Principal.String() + " --to " + e.Destination
	if len(e.Ports) > 0 {
		s += " --port " + PortsString(e.Ports)
	}
	if e.Rate.Set {
		s += " --rate " + e.Rate.String()
	}
	return s
}

// Destination is a parsed exception destination.
type Destination struct {
	Canonical string
	Prefix    netip.Prefix // valid for addresses and CIDRs
	Host      string       // set for host names, resolved later
}

// IsHost reports whether the destination is a name to resolve.
func (d Destination) IsHost() bool { return d.Host != "" }

// ParseDestination accepts an IPv4 or IPv6 address, a CIDR, or a host name.
// CIDRs are masked ("192.0.2.7/24" becomes "192.0.2.0/24"); IPv4-mapped IPv6
// addresses become IPv4, since that is what leaves the host.
func ParseDestination(s string) (Destination, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Destination{}, errors.New("empty destination: give a host name, an address or a CIDR")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Destination{}, fmt.Errorf("invalid CIDR %q: %s", s, cidrProblem(s))
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if p.Bits() == 0 {
			return Destination{}, fmt.Errorf("CIDR %q covers every address: allow the user instead", s)
		}
		return Destination{Canonical: p.String(), Prefix: p}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		if a.Zone() != "" {
			return Destination{}, fmt.Errorf("address %q has a zone: use the plain address", s)
		}
		return Destination{Canonical: a.String(), Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	host := strings.TrimSuffix(strings.ToLower(s), ".")
	if !validHostname(host) {
		return Destination{}, fmt.Errorf("%q is neither an address, a CIDR nor a valid host name", s)
	}
	return Destination{Canonical: host, Host: host}, nil
}

// validHostname applies RFC 1123: dot-separated labels of letters, digits and
// hyphens, 1-63 characters, not starting or ending with a hyphen.
func validHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
				return false
			}
		}
	}
	return true
}

// AddException adds an exception, or replaces the ports of the same
// principal's exception for the same destination. An identical exception
// returns ErrAlreadyAllowed.
func (p *Policy) AddException(e Exception) error {
	for i, old := range p.Exceptions {
		if old.Principal.Same(e.Principal) && old.Destination == e.Destination {
			if slices.Equal(old.Ports, e.Ports) && old.Rate == e.Rate {
				return fmt.Errorf("%s: %w", e, ErrAlreadyAllowed)
			}
			p.Exceptions[i].Ports = slices.Clone(e.Ports)
			p.Exceptions[i].Rate = e.Rate
			return nil
		}
	}
	p.Exceptions = append(p.Exceptions, e)
	return nil
}

// RemoveException removes the principal's exception for a destination.
func (p *Policy) RemoveException(pr Principal, dest string) error {
	n := len(p.Exceptions)
	p.Exceptions = slices.DeleteFunc(p.Exceptions, func(e Exception) bool {
		return e.Principal.Same(pr) && e.Destination == dest
	})
	if len(p.Exceptions) == n {
		return fmt.Errorf("%s has no exception for %s: %w", pr, dest, ErrNotAllowed)
	}
	return nil
}

// CheckExceptionPorts makes sure an exception only names restricted ports
// (others are not restricted, so an exception for them means nothing).
func CheckExceptionPorts(ports, restricted []uint16) error {
	for _, port := range ports {
		if !slices.Contains(restricted, port) {
			return fmt.Errorf("port %d is not restricted (restricted: %s), so it needs no exception", port, PortsString(restricted))
		}
	}
	return nil
}

// ExceptionRule is one kernel-level exception: this uid may reach this
// prefix on this port.
type ExceptionRule struct {
	UID  uint32
	Dst  netip.Prefix
	Port uint16
}

// HostAnswers gives the addresses a host name currently resolves to.
type HostAnswers func(host string) ([]netip.Addr, bool)

// ResolveExceptions expands exceptions into rules: principals into uids (group
// members primary and supplementary, as for allowed groups), host names into
// their current addresses, empty port lists into every restricted port.
// Prefixes covered by a wider one for the same uid and port are dropped, since
// the kernel's interval sets refuse overlaps. It also names what could not be
// resolved.
func ResolveExceptions(p Policy, dir *Directory, answers HostAnswers) (rules []ExceptionRule, unresolved []string) {
	for _, e := range p.Exceptions {
		uids, missing := principalUIDs(e.Principal, dir)
		if missing != "" {
			unresolved = append(unresolved, fmt.Sprintf("exception %s: %s", e, missing))
			continue
		}
		d, err := ParseDestination(e.Destination)
		if err != nil {
			unresolved = append(unresolved, fmt.Sprintf("exception %s: %v", e, err))
			continue
		}
		prefixes := []netip.Prefix{d.Prefix}
		if d.IsHost() {
			addrs, ok := answers(d.Host)
			if !ok || len(addrs) == 0 {
				unresolved = append(unresolved, fmt.Sprintf("exception %s: %s does not resolve (yet)", e, d.Host))
				continue
			}
			prefixes = prefixes[:0]
			for _, a := range addrs {
				a = a.Unmap()
				prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
			}
		}
		ports := e.Ports
		if len(ports) == 0 {
			ports = p.Ports
		}
		for _, uid := range uids {
			for _, port := range ports {
				if !slices.Contains(p.Ports, port) {
					continue // no longer restricted
				}
				for _, pf := range prefixes {
					rules = append(rules, ExceptionRule{UID: uid, Dst: pf, Port: port})
				}
			}
		}
	}
	return normalizeExceptionRules(rules), unresolved
}

func normalizeExceptionRules(rules []ExceptionRule) []ExceptionRule {
	slices.SortFunc(rules, compareExceptionRules)
	rules = slices.Compact(rules)
	out := rules[:0]
	for _, r := range rules {
		covered := false
		for _, k := range out {
			if k.UID == r.UID && k.Port == r.Port && k.Dst.Addr().Is4() == r.Dst.Addr().Is4() &&
				k.Dst.Bits() <= r.Dst.Bits() && k.Dst.Contains(r.Dst.Addr()) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, r)
		}
	}
	return out
}

func compareExceptionRules(a, b ExceptionRule) int {
	return cmp.Or(
		cmp.Compare(a.UID, b.UID),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.Dst.Bits(), b.Dst.Bits()), // wider first, so narrower ones test against it
		a.Dst.Addr().Compare(b.Dst.Addr()),
	)
}

// principalUIDs lists the uids a principal stands for, or says why none.
func principalUIDs(pr Principal, dir *Directory) ([]uint32, string) {
	if pr.Kind == KindUser {
		if pr.ByID {
			return []uint32{pr.ID}, ""
		}
		a, ok := dir.User(pr.Name)
		if !ok {
			return nil, fmt.Sprintf("user %q no longer exists", pr.Name)
		}
		return []uint32{a.UID}, ""
	}
	gid := pr.ID
	grp, ok := dir.GroupByID(gid)
	if !pr.ByID {
		if grp, ok = dir.GroupByName(pr.Name); !ok {
			return nil, fmt.Sprintf("group %q no longer exists", pr.Name)
		}
		gid = grp.GID
	}
	var uids []uint32
	for _, a := range dir.accounts {
		if a.GID == gid {
			uids = append(uids, a.UID)
		}
	}
	if ok {
		for _, m := range grp.Members {
			if a, found := dir.User(m); found {
				uids = append(uids, a.UID)
			}
		}
	}
	slices.Sort(uids)
	return slices.Compact(uids), ""
}

// cidrProblem says in words what is wrong with a CIDR netip refused.
func cidrProblem(s string) string {
	addrText, bitsText, _ := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(addrText)
	if err != nil {
		return fmt.Sprintf("%q before the slash is not an IPv4 or IPv6 address", addrText)
	}
	if addr.Zone() != "" {
		return "an address with a zone (%...) cannot start a range"
	}
	bits, err := strconv.Atoi(bitsText)
	if err != nil || bitsText == "" || bitsText[0] == '+' || bitsText[0] == '-' {
		return fmt.Sprintf("the prefix length after the slash must be a number, not %q", bitsText)
	}
	if bits > addr.BitLen() {
		return fmt.Sprintf("the prefix length %d is more than the %d bits of an IPv%d address", bits, addr.BitLen(), map[int]int{32: 4, 128: 6}[addr.BitLen()])
	}
	if len(bitsText) > 1 && bitsText[0] == '0' {
		return fmt.Sprintf("write the prefix length without leading zeros (%d)", bits)
	}
	return "write it as ADDRESS/LENGTH, e.g. 192.0.2.0/24 or 2001:db8::/32"
}
