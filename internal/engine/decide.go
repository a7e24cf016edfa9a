package engine

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Decision is the stored policy's answer for one uid connecting to one
// address and port now, and the rule that gives it, in words.
type Decision struct {
	UID     uint32
	User    string // "" when no account has the uid
	Address netip.Addr
	Port    uint16
	// Enabled is false when the restriction is off: nothing refuses.
	Enabled bool
	policy.Decision
	// Why names the deciding rule for a person: "allowed user alice",
	// "the exception user alice --to relay.example.net --port 587", "the
	// block rule (mode reject): refused with a TCP reset".
	Why string
	// Held is the uid's active hold, nil when it has none: while it lasts
	// the uid's allowances, exceptions and rate limit are suspended.
	Held *HeldUser
	// HoldRefuses says the hold is what refuses: without it the policy
	// would let the attempt through.
	HoldRefuses bool
	// Rate is the rate limit of the allowance or exception that lets the
	// attempt through (zero: none).
	Rate policy.Rate
}

// Refused reports whether the attempt does not reach its destination:
// rejected, redirected to the local MTA, or answered by the explain
// responder.
func (d Decision) Refused() bool {
	return d.Enabled && (d.Verdict == policy.VerdictReject || d.Verdict == policy.VerdictRedirect || d.Verdict == policy.VerdictExplain)
}

// Decide traces a connection attempt of uid to addr:port through the stored
// policy as the kernel would (policy.Ruleset.Decide), with the accounts, the
// MTA's users and the exceptions' last good answers of now. local says addr
// is one of this host's own addresses (loopback always is).
func (e *Engine) Decide(ctx context.Context, uid uint32, addr netip.Addr, port uint16, local bool) (Decision, error) {
	p, _, err := e.store.Policy(ctx)
	if err != nil {
		return Decision{}, err
	}
	v, err := e.currentView(ctx)
	if err != nil {
		return Decision{}, err
	}
	res, _ := e.resolve(ctx, p, v)
	rs := compile(p, res, v) // a held uid is an ordinary user
	d := Decision{UID: uid, Address: addr.Unmap(), Port: port, Enabled: p.Enabled}
	if a, ok := v.dir.UserByID(uid); ok {
		d.User = a.Name
	}
	pkt := policy.Packet{UID: uid, Dst: addr, DstPort: port, DstLocal: local || addr.IsLoopback()}
	d.Decision = rs.Decide(pkt)
	who := d.User
	if who == "" {
		who = "uid " + strconv.FormatUint(uint64(uid), 10)
	}
	if slices.Contains(v.held, uid) {
		holds, err := e.store.ActiveHolds(ctx, e.cfg.Now())
		if err != nil {
			return Decision{}, err
		}
		for _, h := range holds {
			if h.UID == uid {
				hu := heldUser(h)
				d.Held = &hu
				unheld := policy.Compile(p, res).Decide(pkt)
				d.HoldRefuses = unheld.Verdict != d.Verdict
				break
			}
		}
	}
	if d.Rule == policy.RuleAllowedUID || d.Rule == policy.RuleException {
		d.Rate = rs.RateOf(uid)
	}
	switch d.Rule {
	case policy.RuleOtherPort:
		d.Why = fmt.Sprintf("port %d is not restricted (restricted ports: %s)", port, policy.PortsString(rs.Ports))
	case policy.RuleLocal:
		d.Why = fmt.Sprintf("%s is a local address, and local addresses are always reachable (allow-local on)", d.Address)
	case policy.RuleAllowedUID:
		for _, g := range res.Grants {
			if g.UID == uid {
				d.Why = strings.Join(g.Reasons, ", ")
			}
		}
	case policy.RuleException:
		d.Why = "the exception " + e.exceptionFor(p, v, d.Exception, addr)
	case policy.RuleBlock:
		refusal := e.describe(p.Backend).Refusal
		if refusal == "" {
			refusal = "refused"
		}
		rule := fmt.Sprintf("the block rule (mode %s): %s", rs.Mode, refusal)
		switch d.Verdict {
		case policy.VerdictLog:
			rule = "the log rule (mode log): let through and recorded; mode reject would refuse it"
		case policy.VerdictRedirect:
			rule = "the redirect rule (mode redirect): sent to the local MTA instead"
		case policy.VerdictExplain:
			rule = "the explain rule (mode explain): handed to the daemon's responder, which refuses it with a 554 5.7.1 reply naming the reason (refused at once when no daemon runs)"
		}
		dest := fmt.Sprintf("%s port %d", d.Address, port)
		if !d.Address.IsValid() {
			dest = fmt.Sprintf("port %d of remote servers", port)
		}
		d.Why = fmt.Sprintf("%s; %s is neither allowed nor has an exception for %s", rule, who, dest)
	}
	if !d.Rate.IsZero() {
		d.Why += fmt.Sprintf("; rate limit %s: beyond %d connections in %s they are refused and recorded as rate-limited", d.Rate, d.Rate.Count, durationText(d.Rate.Period))
	}
	if d.Held != nil {
		until := time.Time{}
		if d.Held.Until != nil {
			until = *d.Held.Until
		}
		held := fmt.Sprintf("%s is on hold since %s, %s (%s)", who, d.Held.Since.UTC().Format("2006-01-02 15:04:05 UTC"), untilText(until), d.Held.Reason)
		switch {
		case d.HoldRefuses:
			d.Why = held + ": its allowances and exceptions are suspended, so " + d.Why
		case d.Rule == policy.RuleBlock:
			d.Why += "; " + held
		default:
			d.Why += "; " + held + ", which this connection does not depend on"
		}
	}
	if !p.Enabled {
		d.Why = "the restriction is disabled: nothing refuses it"
	}
	return d, nil
}

// exceptionFor names the stored exceptions that produced rule, as the
// command that made them ("user alice --to relay.example.net --port 587").
func (e *Engine) exceptionFor(p policy.Policy, v view, rule policy.ExceptionRule, addr netip.Addr) string {
	answers := func(host string) ([]netip.Addr, bool) {
		entry, ok := v.dns[host]
		return entry.Addrs, ok && len(entry.Addrs) > 0
	}
	var names []string
	for _, ex := range p.Exceptions {
		one := p
		one.Exceptions = []policy.Exception{ex}
		rules, _ := policy.ResolveExceptions(one, v.dir, answers)
		if slices.ContainsFunc(rules, func(r policy.ExceptionRule) bool {
			return r.UID == rule.UID && r.Port == rule.Port && r.Dst.Contains(addr.Unmap())
		}) {
			names = append(names, ex.String())
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("for %s port %d", rule.Dst, rule.Port)
	}
	return strings.Join(names, "; ")
}
