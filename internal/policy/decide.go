package policy

import "slices"

// Rule names the step of the rule order that decided a connection attempt.
type Rule string

// The rules, in the order every backend applies them.
const (
	RuleOtherPort  Rule = "other-port" // not a restricted port: the first rule lets it leave
	RuleLocal      Rule = "local"      // a local destination, and local destinations are allowed
	RuleAllowedUID Rule = "allowed"    // root, a system user, an allowed user or group member
	RuleException  Rule = "exception"  // an exception covers the destination and port
	RuleBlock      Rule = "block"      // none of the above: the mode's block rule
	// RuleRateLimit: allowed, but over the uid's rate limit (Packet.OverRate),
	// so refused as the mode refuses (explain mode: as reject, since the
	// responder's "may not connect directly" would be wrong).
	RuleRateLimit Rule = "rate-limit"
)

// Decision is the tracer's verdict and the rule that gave it.
type Decision struct {
	Verdict Verdict
	Rule    Rule
	// Exception is the rule that let the attempt through (Rule ==
	// RuleException).
	Exception ExceptionRule
}

// Decide is Trace, saying which rule decides: Trace and every explanation of
// a verdict (doctor, events) share this one rule order.
func (rs Ruleset) Decide(pkt Packet) Decision {
	if !slices.Contains(rs.Ports, pkt.DstPort) {
		return Decision{Verdict: VerdictAccept, Rule: RuleOtherPort}
	}
	if rs.AllowLocal && pkt.DstLocal && !pkt.RoutingHeader {
		return Decision{Verdict: VerdictAccept, Rule: RuleLocal}
	}
	overRate := pkt.OverRate && !rs.RateOf(pkt.UID).IsZero()
	if _, found := slices.BinarySearch(rs.UIDs, pkt.UID); found {
		if overRate {
			return rs.rateRefusal()
		}
		return Decision{Verdict: VerdictAccept, Rule: RuleAllowedUID}
	}
	dst := pkt.Dst.Unmap()
	for _, e := range rs.Exceptions {
		if e.UID == pkt.UID && e.Port == pkt.DstPort && dst.IsValid() && e.Dst.Contains(dst) {
			if overRate {
				return rs.rateRefusal()
			}
			return Decision{Verdict: VerdictAccept, Rule: RuleException, Exception: e}
		}
	}
	switch rs.Mode {
	case ModeLog:
		return Decision{Verdict: VerdictLog, Rule: RuleBlock}
	case ModeRedirect:
		return Decision{Verdict: VerdictRedirect, Rule: RuleBlock}
	case ModeExplain:
		// No certificate a client of implicit TLS could trust answers
		// there: 465 is refused as in reject.
		if pkt.DstPort != ImplicitTLSPort {
			return Decision{Verdict: VerdictExplain, Rule: RuleBlock}
		}
	}
	return Decision{Verdict: VerdictReject, Rule: RuleBlock}
}

// rateRefusal is the verdict for an allowed connection over its rate limit.
func (rs Ruleset) rateRefusal() Decision {
	switch rs.Mode {
	case ModeLog:
		return Decision{Verdict: VerdictLog, Rule: RuleRateLimit}
	case ModeRedirect:
		return Decision{Verdict: VerdictRedirect, Rule: RuleRateLimit}
	}
	return Decision{Verdict: VerdictReject, Rule: RuleRateLimit}
}
