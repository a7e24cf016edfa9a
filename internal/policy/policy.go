// Package policy is smtpguard's domain model: the stored policy, the parsing and
// validation of everything an administrator types, the resolution of users and
// groups into the set of uids that may reach remote SMTP servers, and the compiled,
// backend-neutral Ruleset. It does no I/O: callers hand it file contents.
package policy

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Mode says what happens to a connection from a uid that is not allowed.
type Mode string

// The modes.
const (
	ModeReject   Mode = "reject"   // refuse at once with a TCP reset
	ModeLog      Mode = "log"      // let it through, but count and log it
	ModeRedirect Mode = "redirect" // send it to the same port on loopback, where the local MTA listens
	// ModeExplain hands a connection to a plain-text SMTP port to the
	// daemon's responder on loopback, which answers 554 5.7.1 with the
	// reason; implicit TLS (ImplicitTLSPort) is refused as in reject.
	ModeExplain Mode = "explain"
)

// ImplicitTLSPort is SMTPS: a client there expects a TLS handshake first and
// no certificate it could trust can answer, so explain mode refuses it.
const ImplicitTLSPort = 465

// DefaultExplainPort is where the daemon's explain responder listens on
// 127.0.0.1 and ::1 unless "serve --explain-port" says otherwise. It is
// below 1024, so only root may listen there: whenever no daemon listens
// (stopped, restarting) the kernel still hands every blocked connection to
// that port, and a user's listener would read the others' mail and
// credentials. It is below 512 too, out of the range bindresvport(3) (NFS,
// RPC) draws from, and no MTA or content filter uses it by convention.
const DefaultExplainPort = 325

// defaultPorts are the remote SMTP ports a new policy restricts: SMTP,
// SMTPS (implicit TLS submission), submission, and 2525, which relays
// (SendGrid, Mailgun, SparkPost, ...) advertise precisely for networks that
// block the other three, so leaving it open leaves the bypass open.
var defaultPorts = []uint16{25, 465, 587, 2525}

// DefaultPorts returns a fresh copy of the ports a new policy restricts.
func DefaultPorts() []uint16 { return slices.Clone(defaultPorts) }

// legacyPorts were the defaults before 2525 joined them: what a version 1
// policy file without a ports key has always meant, and what CSF, cPanel
// and Imunify360 close by default.
var legacyPorts = []uint16{25, 465, 587}

// LegacyPorts returns a fresh copy of 25, 465, 587: the ports of a policy
// file that leaves ports out, so the same file gives the same policy before
// and after the default grew (a fleet's files keep what they say).
func LegacyPorts() []uint16 { return slices.Clone(legacyPorts) }

// BackendAuto asks "enable --backend" for the best backend that works here;
// every other name is a backend's own (enforce.Backend.Name), and which of
// them exist is the build's business, not the policy's.
const BackendAuto = "auto"

// backendNameHint is how a bad backend name's error says what to write.
const backendNameHint = "use auto or a backend's name (lowercase letters and digits)"

// PrincipalKind is "user" or "group".
type PrincipalKind string

// The principal kinds.
const (
	KindUser  PrincipalKind = "user"
	KindGroup PrincipalKind = "group"
)

// Principal is an allowed user or group as the administrator named it. A
// principal given by name follows that name (so a renumbered account stays
// allowed); one given by number stays that number even without an account.
type Principal struct {
	Kind PrincipalKind
	Name string // empty when given by number and no account had that number
	ID   uint32 // the uid/gid when added
	ByID bool   // the administrator typed the number, not the name
	// Rate is an allowed user's or group's own rate limit (unset: the
	// policy's default). Same ignores it: it is a setting, not an identity.
	Rate RateSetting
}

// Ref is how the principal is shown and written back to policy files: the name
// when there is one, else the number.
func (p Principal) Ref() string {
	if p.ByID {
		return strconv.FormatUint(uint64(p.ID), 10)
	}
	return p.Name
}

// String reads "user alice" or "group 1005".
func (p Principal) String() string { return string(p.Kind) + " " + p.Ref() }

// Same reports whether two principals designate the same account.
func (p Principal) Same(q Principal) bool {
	if p.Kind != q.Kind {
		return false
	}
	if p.ByID || q.ByID {
		return p.ID == q.ID
	}
	return p.Name == q.Name
}

// Policy is the whole desired state an administrator controls.
type Policy struct {
	Enabled bool
	Backend string // backend chosen at enable: "auto" or a backend name
	// Cgroup is the cgroup v2 directory a cgroup backend (bpf) attaches
	// to, stored so the daemon re-converges the same attachment at boot;
	// empty means the backend's default (the cgroup2 root). Backends that
	// do not attach to cgroups ignore it.
	Cgroup string
	// BackendWhy says, for each compiled-in backend, why the last enable
	// chose Backend and not it ("auto could not use it: ..."), so status
	// can tell; nil before any enable. It explains, it does not enforce.
	BackendWhy map[string]string
	Mode       Mode
	Ports      []uint16 // sorted, unique
	AllowLocal bool     // loopback and this host's own addresses stay reachable
	Users      []Principal
	Groups     []Principal
	Exceptions []Exception // scoped permissions: one principal, one destination
	// RateLimit is the default limit on every allowed user's, group's and
	// exception's connections (zero: none); an allowance's own Rate wins.
	RateLimit Rate
}

// Default is the policy of a fresh install: disabled, reject mode, the
// SMTP ports 25, 465, 587 and 2525, local delivery allowed, nobody extra
// allowed. A stored policy keeps its own ports: this is only for a store
// that holds none yet.
func Default() Policy {
	return Policy{
		Backend:    BackendAuto,
		Mode:       ModeReject,
		Ports:      DefaultPorts(),
		AllowLocal: true,
	}
}

// Clone returns a deep copy, so edits never alias the original.
func (p Policy) Clone() Policy {
	p.Ports = slices.Clone(p.Ports)
	p.BackendWhy = maps.Clone(p.BackendWhy)
	p.Users = slices.Clone(p.Users)
	p.Groups = slices.Clone(p.Groups)
	p.Exceptions = slices.Clone(p.Exceptions)
	for i := range p.Exceptions {
		p.Exceptions[i].Ports = slices.Clone(p.Exceptions[i].Ports)
	}
	return p
}

// Equal reports whether two policies are the same desired state.
func (p Policy) Equal(q Policy) bool {
	return p.Enabled == q.Enabled && p.Backend == q.Backend && p.Cgroup == q.Cgroup && maps.Equal(p.BackendWhy, q.BackendWhy) && p.Mode == q.Mode &&
		p.AllowLocal == q.AllowLocal && slices.Equal(p.Ports, q.Ports) && p.RateLimit == q.RateLimit &&
		slices.Equal(p.Users, q.Users) && slices.Equal(p.Groups, q.Groups) &&
		slices.EqualFunc(p.Exceptions, q.Exceptions, func(a, b Exception) bool {
			return a.Principal == b.Principal && a.Destination == b.Destination && slices.Equal(a.Ports, b.Ports) && a.Rate == b.Rate
		})
}

// Principals returns the allowed principals of one kind.
func (p *Policy) principals(kind PrincipalKind) *[]Principal {
	if kind == KindGroup {
		return &p.Groups
	}
	return &p.Users
}

// ErrAlreadyAllowed and ErrNotAllowed let callers report no-op edits kindly.
var (
	ErrAlreadyAllowed = errors.New("already allowed")
	ErrNotAllowed     = errors.New("not in the allowed list")
)

// Allow adds a principal; adding one already present returns ErrAlreadyAllowed.
func (p *Policy) Allow(pr Principal) error {
	list := p.principals(pr.Kind)
	for _, q := range *list {
		if q.Same(pr) {
			return fmt.Errorf("%s: %w", pr, ErrAlreadyAllowed)
		}
	}
	*list = append(*list, pr)
	return nil
}

// Revoke removes a principal; removing one not present returns ErrNotAllowed.
func (p *Policy) Revoke(pr Principal) error {
	list := p.principals(pr.Kind)
	n := len(*list)
	*list = slices.DeleteFunc(*list, func(q Principal) bool { return q.Same(pr) })
	if len(*list) == n {
		return fmt.Errorf("%s: %w", pr, ErrNotAllowed)
	}
	return nil
}

// ParseMode parses a mode name. Redirect is refused until the MTA integration
// that makes it safe lands.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeReject, ModeLog, ModeRedirect, ModeExplain:
		return m, nil
	default:
		return "", fmt.Errorf("unknown mode %q: use reject, redirect, explain or log", s)
	}
}

// ParseOnOff parses on/off style booleans for settings such as allow-local.
func ParseOnOff(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "yes", "true", "1", "enable", "enabled":
		return true, nil
	case "off", "no", "false", "0", "disable", "disabled":
		return false, nil
	}
	return false, fmt.Errorf("invalid value %q: use on or off", s)
}

// ParsePorts parses a comma-separated port list such as "25,465,587". The
// result is sorted. Zero, out-of-range, duplicate and non-numeric entries are
// errors, as is an empty list (which would silently restrict nothing).
func ParsePorts(s string) ([]uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("no ports given: list them like 25,465,587")
	}
	var ports []uint16
	for field := range strings.SplitSeq(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			return nil, fmt.Errorf("empty entry in port list %q", s)
		}
		n, err := strconv.ParseUint(field, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("port %q is not a number", field)
		}
		if n > 65535 {
			return nil, fmt.Errorf("port %s is outside 1-65535", field)
		}
		p, err := checkPort(int64(n))
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return normalizePorts(ports)
}

func checkPort(n int64) (uint16, error) {
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d is outside 1-65535", n)
	}
	return uint16(n), nil
}

// normalizePorts sorts ports and rejects duplicates.
func normalizePorts(ports []uint16) ([]uint16, error) {
	if len(ports) == 0 {
		return nil, errors.New("no ports given: at least one port must be restricted")
	}
	out := slices.Clone(ports)
	slices.Sort(out)
	for i := 1; i < len(out); i++ {
		if out[i] == out[i-1] {
			return nil, fmt.Errorf("port %d is listed twice", out[i])
		}
	}
	return out, nil
}

// Validate checks a whole policy against the system accounts and returns every
// problem found, each prefixed by its field, joined into one error.
func Validate(p Policy, dir *Directory) error {
	var errs []error
	switch p.Mode {
	case ModeReject, ModeLog, ModeRedirect, ModeExplain:
	default:
		// Only canonical modes: the backends compare them exactly.
		if _, err := ParseMode(string(p.Mode)); err != nil {
			errs = append(errs, fmt.Errorf("mode: %w", err))
		} else {
			errs = append(errs, fmt.Errorf("mode: %q is not written canonically: use reject, redirect, explain or log", p.Mode))
		}
	}
	if !validBackendName(p.Backend) {
		errs = append(errs, fmt.Errorf("backend: invalid backend name %q: %s", p.Backend, backendNameHint))
	}
	if err := ValidCgroup(p.Cgroup); err != nil {
		errs = append(errs, fmt.Errorf("cgroup: %w", err))
	}
	if _, err := normalizePorts(p.Ports); err != nil {
		errs = append(errs, fmt.Errorf("ports: %w", err))
	}
	if !validRate(p.RateLimit) {
		errs = append(errs, fmt.Errorf("rate_limit: %q is not a rate: write N/PERIOD with PERIOD s, m, h or d, or off", p.RateLimit))
	}
	for field, list := range map[string][]Principal{"allowed_users": p.Users, "allowed_groups": p.Groups} {
		for i, pr := range list {
			if !validRate(pr.Rate.Rate) {
				errs = append(errs, fmt.Errorf("%s[%d]: rate %q is not a rate: write N/PERIOD with PERIOD s, m, h or d, or off", field, i, pr.Rate.Rate))
			}
		}
	}
	for i, e := range p.Exceptions {
		if !validRate(e.Rate.Rate) {
			errs = append(errs, fmt.Errorf("exceptions[%d]: rate %q is not a rate: write N/PERIOD with PERIOD s, m, h or d, or off", i, e.Rate.Rate))
		}
	}
	users, groups := newSameSet(), newSameSet()
	for i, pr := range p.Users {
		if _, err := dir.ResolvePrincipal(KindUser, pr.Ref()); err != nil {
			errs = append(errs, fmt.Errorf("allowed_users[%d]: %w", i, err))
		}
		if users.add(pr) {
			errs = append(errs, fmt.Errorf("allowed_users[%d]: %s is listed twice", i, pr))
		}
	}
	for i, pr := range p.Groups {
		if _, err := dir.ResolvePrincipal(KindGroup, pr.Ref()); err != nil {
			errs = append(errs, fmt.Errorf("allowed_groups[%d]: %w", i, err))
		}
		if groups.add(pr) {
			errs = append(errs, fmt.Errorf("allowed_groups[%d]: %s is listed twice", i, pr))
		}
	}
	for i, e := range p.Exceptions {
		field := fmt.Sprintf("exceptions[%d]", i)
		if _, err := dir.ResolvePrincipal(e.Principal.Kind, e.Principal.Ref()); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		if d, err := ParseDestination(e.Destination); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		} else if d.Canonical != e.Destination {
			errs = append(errs, fmt.Errorf("%s: destination %q is not written canonically (%q)", field, e.Destination, d.Canonical))
		}
		if !slices.IsSorted(e.Ports) || len(slices.Compact(slices.Clone(e.Ports))) != len(e.Ports) {
			errs = append(errs, fmt.Errorf("%s: ports must be sorted and unique", field))
		}
		for _, q := range p.Exceptions[:i] {
			if q.Principal.Same(e.Principal) && q.Destination == e.Destination {
				errs = append(errs, fmt.Errorf("%s: %s is listed twice", field, e))
			}
		}
	}
	return errors.Join(errs...)
}

// sameSet finds principals of one kind that are Same as one seen before, in
// constant time per principal, so validating 10,000 allowed users stays cheap.
type sameSet struct {
	names  map[string]bool // names of principals given by name
	byIDs  map[uint32]bool // ids of principals given by number
	allIDs map[uint32]bool // ids of every principal
}

func newSameSet() *sameSet {
	return &sameSet{names: map[string]bool{}, byIDs: map[uint32]bool{}, allIDs: map[uint32]bool{}}
}

// add records p and reports whether a principal Same as p was added before.
func (s *sameSet) add(p Principal) bool {
	var dup bool
	if p.ByID {
		dup = s.allIDs[p.ID]
		s.byIDs[p.ID] = true
	} else {
		dup = s.names[p.Name] || s.byIDs[p.ID]
		s.names[p.Name] = true
	}
	s.allIDs[p.ID] = true
	return dup
}

// validBackendName accepts lowercase identifiers; which backends exist is the
// engine's business, since it knows what this build and host provide.
func validBackendName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// ValidCgroup accepts an empty cgroup (the backend's default) or a clean
// absolute path: it is stored and compared exactly.
func ValidCgroup(path string) error {
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("%q is not a clean absolute path: give the cgroup directory, e.g. /sys/fs/cgroup/smtpguard.slice", path)
	}
	return nil
}
