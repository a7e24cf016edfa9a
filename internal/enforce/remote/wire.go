package remote

import (
	"net/netip"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// The operations a request may ask for.
const (
	opPing   = "ping"
	opProbe  = "probe"
	opApply  = "apply"
	opRemove = "remove"
	opVerify = "verify"
)

// request is one call, sent as a single JSON object.
type request struct {
	Op      string       `json:"op"`
	Backend string       `json:"backend,omitempty"`
	Ruleset *wireRuleset `json:"ruleset,omitempty"`
}

// response answers one request.
type response struct {
	Error string `json:"error,omitempty"`
	// NotSupported marks an Error that wraps enforce.ErrNotSupported on the
	// daemon's side, so callers can still branch on it.
	NotSupported bool           `json:"not_supported,omitempty"`
	Drift        *enforce.Drift `json:"drift,omitempty"`
	Daemon       *Info          `json:"daemon,omitempty"`
}

// Info is what a ping tells about the daemon.
type Info struct {
	PID int `json:"pid"`
	// Recording is true while the daemon reads blocked attempts from the
	// kernel and stores them.
	Recording bool `json:"recording"`
	// Backends are the names of the backends the daemon enforces with.
	Backends []string `json:"backends"`
}

// wireRuleset is policy.Ruleset on the wire. It is spelled out rather than
// relying on Ruleset's Go field names, so renaming a field cannot silently
// change the protocol; TestRulesetRoundTrip fails when Ruleset gains a field
// this type does not carry. Nil and empty lists stay distinct (null vs []).
type wireRuleset struct {
	Mode       string          `json:"mode"`
	Ports      []uint16        `json:"ports"`
	AllowLocal bool            `json:"allow_local"`
	Cgroup     string          `json:"cgroup,omitempty"`
	UIDs       []uint32        `json:"uids"`
	Exceptions []wireException `json:"exceptions"`
	RateLimits []wireRate      `json:"rate_limits,omitempty"`
}

// wireRate is one uid's rate limit: Count connections per PeriodSeconds.
type wireRate struct {
	UID           uint32 `json:"uid"`
	Count         uint32 `json:"count"`
	PeriodSeconds int64  `json:"period_seconds"`
}

type wireException struct {
	UID  uint32       `json:"uid"`
	Dst  netip.Prefix `json:"dst"` // text form, "192.0.2.0/24"; the address is kept unmasked
	Port uint16       `json:"port"`
}

func toWire(rs policy.Ruleset) *wireRuleset {
	w := &wireRuleset{
		Mode: string(rs.Mode), Ports: rs.Ports, AllowLocal: rs.AllowLocal, Cgroup: rs.Cgroup, UIDs: rs.UIDs,
	}
	if rs.Exceptions != nil {
		w.Exceptions = make([]wireException, len(rs.Exceptions))
		for i, e := range rs.Exceptions {
			w.Exceptions[i] = wireException{UID: e.UID, Dst: e.Dst, Port: e.Port}
		}
	}
	for _, r := range rs.RateLimits {
		w.RateLimits = append(w.RateLimits, wireRate{UID: r.UID, Count: r.Rate.Count, PeriodSeconds: int64(r.Rate.Period / time.Second)})
	}
	return w
}

func fromWire(w *wireRuleset) policy.Ruleset {
	rs := policy.Ruleset{
		Mode: policy.Mode(w.Mode), Ports: w.Ports, AllowLocal: w.AllowLocal, Cgroup: w.Cgroup, UIDs: w.UIDs,
	}
	if w.Exceptions != nil {
		rs.Exceptions = make([]policy.ExceptionRule, len(w.Exceptions))
		for i, e := range w.Exceptions {
			rs.Exceptions[i] = policy.ExceptionRule{UID: e.UID, Dst: e.Dst, Port: e.Port}
		}
	}
	for _, r := range w.RateLimits {
		rs.RateLimits = append(rs.RateLimits, policy.UIDRate{UID: r.UID, Rate: policy.Rate{Count: r.Count, Period: time.Duration(r.PeriodSeconds) * time.Second}})
	}
	return rs
}

// remoteError is an error the daemon reported; it keeps ErrNotSupported
// matchable across the socket.
type remoteError struct {
	msg          string
	notSupported bool
}

func (e *remoteError) Error() string { return e.msg }

func (e *remoteError) Is(target error) bool {
	return e.notSupported && target == enforce.ErrNotSupported
}
