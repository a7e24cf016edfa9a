package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
)

// SystemUser is an account allowed by smtpguard itself rather than by the
// administrator: the MTA's service user or the mailing-list manager's.
type SystemUser struct {
	Name   string // account name, e.g. "Debian-exim"
	Reason string // e.g. "MTA exim4"
}

// Grant explains why one uid may connect.
type Grant struct {
	UID     uint32   `json:"uid"`
	User    string   `json:"user,omitempty"`
	Reasons []string `json:"reasons"`
}

// Resolution is the outcome of turning principals into uids.
type Resolution struct {
	UIDs       []uint32 // sorted, unique; always contains 0
	Grants     []Grant  // one per uid, same order
	Unresolved []string // named principals that no longer exist, for status
	// Exceptions are the scoped permissions, expanded (see ResolveExceptions).
	Exceptions []ExceptionRule
	// RateLimits are the allowed uids' rate limits (see rateLimits for the
	// precedence); Resolve fills them.
	RateLimits []UIDRate
}

// Resolve computes the uids that may connect: root, the system users (MTA,
// list manager), allowed users, and every member of each allowed group, both
// those whose primary group it is and its supplementary members.
func Resolve(p Policy, dir *Directory, system []SystemUser) Resolution {
	reasons := make(map[uint32][]string, 1+len(system)+len(p.Users))
	reasons[0] = []string{"root"}
	add := func(uid uint32, why string) {
		if !slices.Contains(reasons[uid], why) {
			reasons[uid] = append(reasons[uid], why)
		}
	}
	var unresolved []string
	for _, s := range system {
		if a, ok := dir.User(s.Name); ok {
			add(a.UID, s.Reason)
		}
	}
	for _, u := range p.Users {
		switch {
		case u.ByID:
			add(u.ID, "allowed user "+u.Ref())
		default:
			a, ok := dir.User(u.Name)
			if !ok {
				unresolved = append(unresolved, fmt.Sprintf("allowed user %q no longer exists", u.Name))
				continue
			}
			add(a.UID, "allowed user "+u.Name)
		}
	}
	for _, g := range p.Groups {
		gid := g.ID
		grp, ok := dir.GroupByID(gid)
		if !g.ByID {
			grp, ok = dir.GroupByName(g.Name)
			if !ok {
				unresolved = append(unresolved, fmt.Sprintf("allowed group %q no longer exists", g.Name))
				continue
			}
			gid = grp.GID
		}
		label := "allowed group " + g.Ref()
		for _, a := range dir.accounts {
			if a.GID == gid {
				add(a.UID, label)
			}
		}
		if ok {
			for _, m := range grp.Members {
				if a, found := dir.User(m); found {
					add(a.UID, label)
				}
			}
		}
	}
	uids := slices.Sorted(maps.Keys(reasons))
	grants := make([]Grant, 0, len(uids))
	for _, uid := range uids {
		gr := Grant{UID: uid, Reasons: reasons[uid]}
		if a, ok := dir.UserByID(uid); ok {
			gr.User = a.Name
		}
		grants = append(grants, gr)
	}
	return Resolution{UIDs: uids, Grants: grants, Unresolved: unresolved, RateLimits: rateLimits(p, dir, system)}
}

// Ruleset is the resolved, backend-neutral description of what the kernel must
// enforce while the restriction is enabled.
type Ruleset struct {
	Mode       Mode
	Ports      []uint16 // sorted, unique
	AllowLocal bool
	// Cgroup is Policy.Cgroup: where a cgroup backend attaches (empty:
	// its default).
	Cgroup string
	UIDs   []uint32 // sorted, unique
	// Exceptions let a uid reach one prefix on one port; sorted, without
	// prefixes covered by wider ones.
	Exceptions []ExceptionRule
	// RateLimits limit allowed uids' connections to restricted ports, one
	// bucket per uid; sorted by uid, never root's or a system user's.
	RateLimits []UIDRate
	// ExplainPort is the loopback port of the daemon's explain responder,
	// in explain mode only (0 otherwise).
	ExplainPort uint16
}

// Clone returns a deep copy.
func (rs Ruleset) Clone() Ruleset {
	rs.Ports, rs.UIDs, rs.Exceptions = slices.Clone(rs.Ports), slices.Clone(rs.UIDs), slices.Clone(rs.Exceptions)
	rs.RateLimits = slices.Clone(rs.RateLimits)
	return rs
}

// Equal reports whether two rulesets enforce the same thing (nil and empty
// lists alike).
func (rs Ruleset) Equal(o Ruleset) bool {
	return rs.Mode == o.Mode && rs.AllowLocal == o.AllowLocal && rs.Cgroup == o.Cgroup &&
		slices.Equal(rs.Ports, o.Ports) && slices.Equal(rs.UIDs, o.UIDs) && slices.Equal(rs.Exceptions, o.Exceptions) &&
		slices.Equal(rs.RateLimits, o.RateLimits) && rs.ExplainPort == o.ExplainPort
}

// Compile turns a policy and its resolution into a Ruleset.
func Compile(p Policy, r Resolution) Ruleset {
	rs := Ruleset{
		Mode:       p.Mode,
		Ports:      slices.Clone(p.Ports),
		AllowLocal: p.AllowLocal,
		Cgroup:     p.Cgroup,
		UIDs:       slices.Clone(r.UIDs),
		Exceptions: slices.Clone(r.Exceptions),
		RateLimits: slices.Clone(r.RateLimits),
	}
	if p.Mode == ModeExplain {
		rs.ExplainPort = DefaultExplainPort
	}
	return rs
}

// Packet is what the verdict tracer needs to know of a connection attempt.
type Packet struct {
	UID      uint32
	Dst      netip.Addr
	DstPort  uint16
	DstLocal bool // loopback or one of this host's own addresses
	// RoutingHeader: an IPv6 packet with a routing header (source route),
	// whose destination address is only its next segment: never local.
	RoutingHeader bool
	// OverRate: the uid's rate-limit bucket is empty (it has used its
	// RateLimits allowance), so an allowed connection is refused as a
	// blocked one would be. Meaningless for a uid without a rate limit.
	OverRate bool
}

// Verdict is the tracer's answer.
type Verdict string

// The verdicts.
const (
	VerdictAccept   Verdict = "accept"   // not restricted, or allowed
	VerdictLog      Verdict = "log"      // restricted, not allowed, let through and logged (log mode)
	VerdictReject   Verdict = "reject"   // restricted, not allowed, refused with a reset
	VerdictRedirect Verdict = "redirect" // restricted, not allowed, sent to the local MTA
	VerdictExplain  Verdict = "explain"  // restricted, not allowed, sent to the explain responder
)

// Trace answers "may this connection attempt pass?" with the same rule order
// every backend implements: non-SMTP ports leave first, then local
// destinations (when allowed; never a packet with a routing header), then allowed uids, then exceptions, then the
// block. An allowed uid over its rate limit gets the block's verdict; local
// destinations are never rate limited.
func (rs Ruleset) Trace(pkt Packet) Verdict { return rs.Decide(pkt).Verdict }

// allows reports whether an allowance or an exception lets pkt through.
func (rs Ruleset) allows(pkt Packet) bool {
	if _, found := slices.BinarySearch(rs.UIDs, pkt.UID); found {
		return true
	}
	dst := pkt.Dst.Unmap()
	for _, e := range rs.Exceptions {
		if e.UID == pkt.UID && e.Port == pkt.DstPort && dst.IsValid() && e.Dst.Contains(dst) {
			return true
		}
	}
	return false
}

// PortsString renders ports as the CLI takes them: "25,465,587".
func PortsString(ports []uint16) string {
	s := ""
	for i, p := range ports {
		if i > 0 {
			s += ","
		}
		s += strconv.Itoa(int(p))
	}
	return s
}
