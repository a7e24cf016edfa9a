package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/smtpguard/smtpguard/internal/conflicts"
	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// Kernel describes what the kernel enforces compared with the stored policy.
type Kernel struct {
	// State is "in sync", "drift", "not enforcing" (disabled), "leftovers"
	// (disabled, but rules are still in the kernel), "policy missing" (the
	// database holds no policy but rules are in the kernel) or "unknown" (the
	// check itself failed, usually for lack of privileges).
	State    string   `json:"state"`
	Problems []string `json:"problems,omitempty"`
	Error    string   `json:"error,omitempty"`
	Fix      string   `json:"fix,omitempty"`     // what to run, when not the usual "enable"
	Present  []string `json:"present,omitempty"` // backends with rules in the kernel, when disabled
}

// Status is everything "smtpguard status" shows. The first six fields are the
// stable contract scripts rely on.
type Status struct {
	Enabled bool   `json:"enabled"`
	Backend string `json:"backend"`
	// Cgroup is where a cgroup backend (bpf) attaches; empty for the
	// others, and for bpf when the daemon's default (serve --cgroup, else
	// the cgroup2 root) applies.
	Cgroup string `json:"cgroup,omitempty"`
	// Backends says of each compiled-in backend whether it is the one in
	// use and why the others are not.
	Backends      []BackendChoice   `json:"backends"`
	Mode          string            `json:"mode"`
	Ports         []uint16          `json:"ports"`
	AllowedUsers  []string          `json:"allowed_users"`
	AllowedGroups []string          `json:"allowed_groups"`
	AllowLocal    bool              `json:"allow_local"`
	Exceptions    []ExceptionStatus `json:"exceptions"`
	AllowedUIDs   []policy.Grant    `json:"allowed_uids"`
	Unresolved    []string          `json:"unresolved,omitempty"`
	MTA           mta.Detection     `json:"mta"`
	Kernel        Kernel            `json:"kernel"`
	// Covers says whose connections the backend sees, and Limitations are
	// the ways around the restriction it cannot close, stated so nobody
	// mistakes them for covered; both are the backend's own
	// (enforce.Description).
	Covers      string   `json:"covers,omitempty"`
	Limitations []string `json:"limitations"`
	// Conflicts are other tools' SMTP blocks, which refuse users smtpguard
	// allows.
	Conflicts []conflicts.Conflict `json:"conflicts"`
	// RateLimit is the default rate limit ("100/h", "off"); RateLimits
	// each limited uid's, and AllowedConnections the connections the
	// backend let through per uid (see ratestatus.go).
	RateLimit          string            `json:"rate_limit"`
	UserRates          map[string]string `json:"user_rates"`  // allowed users' own rates, by name as listed
	GroupRates         map[string]string `json:"group_rates"` // allowed groups' own rates
	RateLimits         []RateLimitStatus `json:"rate_limits"`
	AllowedConnections []AllowedCount    `json:"allowed_connections"`
	// Held are the users on hold now (holds.go), and the embedded settings
	// the automatic hold's ("hold_after", "hold_for").
	Held []HeldUser `json:"held"`
	HoldSettingsView
	Revision  int64      `json:"revision"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	UpdatedBy string     `json:"updated_by,omitempty"`
}

// Status reports the stored policy, who it lets through, and whether the
// kernel matches it.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	p, meta, err := e.store.Policy(ctx)
	if err != nil {
		return Status{}, err
	}
	v, err := e.currentView(ctx)
	if err != nil {
		return Status{}, err
	}
	res, det := e.resolve(ctx, p, v)
	st := Status{
		Enabled:       p.Enabled,
		Backend:       p.Backend,
		Cgroup:        p.Cgroup,
		Mode:          string(p.Mode),
		Ports:         p.Ports,
		AllowedUsers:  refs(p.Users),
		AllowedGroups: refs(p.Groups),
		AllowLocal:    p.AllowLocal,
		AllowedUIDs:   res.Grants,
		Unresolved:    res.Unresolved,
		MTA:           det,
		Revision:      meta.Revision,
		UpdatedBy:     meta.UpdatedBy,
		Kernel:        Kernel{State: "not enforcing"},
	}
	if meta.Revision > 0 {
		st.UpdatedAt = &meta.UpdatedAt
	}
	st.Backends = e.backendChoices(p)
	st.Exceptions = exceptionStatus(p, v.dns)
	desc := e.describe(p.Backend)
	st.Covers, st.Limitations = desc.Covers, desc.Limitations
	if st.Limitations == nil {
		st.Limitations = []string{}
	}
	if st.Held, err = e.Holds(ctx); err != nil {
		return Status{}, err
	}
	// A held uid is an ordinary user: it may not connect now.
	st.AllowedUIDs = slices.DeleteFunc(st.AllowedUIDs, func(g policy.Grant) bool { return slices.Contains(v.held, g.UID) })
	hs, err := e.store.HoldSettings(ctx)
	if err != nil {
		return Status{}, err
	}
	st.HoldSettingsView = holdSettingsView(hs)
	st.Conflicts = []conflicts.Conflict{}
	if e.cfg.Conflicts != nil {
		st.Conflicts = append(st.Conflicts, e.cfg.Conflicts.Detect(ctx)...)
	}
	e.rateStatus(ctx, &st, p, res, v.dir)
	if p.Enabled {
		st.Kernel = e.kernel(ctx, compile(p, res, v), p.Backend)
	} else {
		st.Kernel = e.disabledKernel(ctx, meta) // leftovers, or a lost database
	}
	return st, nil
}

func (e *Engine) kernel(ctx context.Context, rs policy.Ruleset, backend string) Kernel {
	b, err := e.backend(backend)
	if err != nil {
		return Kernel{State: "unknown", Error: err.Error()}
	}
	drift, err := b.Verify(ctx, rs)
	if err != nil {
		return Kernel{State: "unknown", Error: err.Error()}
	}
	if !drift.InSync() {
		return Kernel{State: "drift", Problems: drift.Problems}
	}
	return Kernel{State: "in sync"}
}

func refs(ps []policy.Principal) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Ref())
	}
	return out
}

// Plan is what "enable" would do, computed without changing anything.
type Plan struct {
	Backend     string         `json:"backend"`
	Reason      string         `json:"reason"`
	Ruleset     RulesetView    `json:"ruleset"`
	AllowedUIDs []policy.Grant `json:"allowed_uids"`
	Unresolved  []string       `json:"unresolved,omitempty"`
	Rendered    string         `json:"rendered"`
	// Kernel compares the plan with what the kernel holds now.
	Kernel Kernel `json:"kernel"`
}

// RulesetView is a Ruleset for JSON output.
type RulesetView struct {
	Mode       string   `json:"mode"`
	Ports      []uint16 `json:"ports"`
	AllowLocal bool     `json:"allow_local"`
	UIDs       []uint32 `json:"uids"`
	// RateLimits are the limited uids' rates ("5/m").
	RateLimits []RateLimitStatus `json:"rate_limits"`
}

// Plan computes the ruleset "enable --backend backend" would install.
func (e *Engine) Plan(ctx context.Context, backend string) (Plan, error) {
	p, _, err := e.store.Policy(ctx)
	if err != nil {
		return Plan{}, err
	}
	return e.planFor(ctx, p, backend)
}

// PreviewImport is what "import" of f would store, and what enabling it would
// install, changing nothing: import --dry-run.
func (e *Engine) PreviewImport(ctx context.Context, f policy.File) (policy.Policy, Plan, error) {
	dir, err := e.Directory()
	if err != nil {
		return policy.Policy{}, Plan{}, err
	}
	p, err := f.Policy(dir)
	if err != nil {
		return policy.Policy{}, Plan{}, invalid(err)
	}
	if err := policy.Validate(p, dir); err != nil {
		return policy.Policy{}, Plan{}, invalid(err)
	}
	pl, err := e.planFor(ctx, p, p.Backend)
	return p, pl, err
}

// planFor computes the ruleset p would install with backend.
func (e *Engine) planFor(ctx context.Context, p policy.Policy, backend string) (Plan, error) {
	enabledWith := false
	if backend == "" {
		backend = policy.BackendAuto
		if p.Enabled {
			backend, enabledWith = p.Backend, true
		}
	}
	b, reason, err := enforce.Choose(ctx, backend, e.cfg.Backends)
	if err == nil && enabledWith {
		// The stored name is what enable chose (auto or not): nobody asked
		// for it on this command line.
		reason = "the backend enforcing now"
	}
	if err != nil {
		// Planning must work where probing cannot (no root): fall back to
		// rendering with the named or best candidate, and say so.
		if b, err = e.planBackend(backend); err != nil {
			return Plan{}, invalid(err)
		}
		reason = "backend could not be probed here (needs root); showing its rules anyway"
	}
	v, err := e.currentView(ctx)
	if err != nil {
		return Plan{}, err
	}
	p.Enabled, p.Backend = true, b.Name()
	res, _ := e.resolve(ctx, p, v)
	rs := compile(p, res, v)
	pl := Plan{
		Backend:     b.Name(),
		Reason:      reason,
		Ruleset:     RulesetView{Mode: string(rs.Mode), Ports: rs.Ports, AllowLocal: rs.AllowLocal, UIDs: rs.UIDs, RateLimits: rateLimitViews(rs, res)},
		AllowedUIDs: res.Grants,
		Unresolved:  res.Unresolved,
		Rendered:    b.Render(rs),
	}
	drift, err := b.Verify(ctx, rs)
	switch {
	case err != nil:
		pl.Kernel = Kernel{State: "unknown", Error: err.Error()}
	case drift.InSync():
		pl.Kernel = Kernel{State: "in sync"}
	default:
		pl.Kernel = Kernel{State: "drift", Problems: drift.Problems}
	}
	return pl, nil
}

func (e *Engine) planBackend(name string) (enforce.Backend, error) {
	if name == policy.BackendAuto {
		if len(e.cfg.Backends) == 0 {
			return nil, errors.New("no backend in this build")
		}
		return e.cfg.Backends[0], nil
	}
	return e.backend(name)
}

// Export returns the stored policy as a policy file.
func (e *Engine) Export(ctx context.Context) (policy.File, error) {
	p, _, err := e.store.Policy(ctx)
	if err != nil {
		return policy.File{}, err
	}
	return policy.ToFile(p), nil
}

// EventView is a recorded attempt with its explanation: which rule stopped it
// and the narrowest command that would let it through.
type EventView struct {
	store.Event
	BlockedBy    string `json:"blocked_by"`
	AllowCommand string `json:"allow_command"` // "" for a folded destination
	// Folded is set when Address is not one address but a prefix (/24, /64)
	// or "other": the daemon folds a uid's destinations beyond a per-minute
	// cap so that a flood cannot grow the database without bound.
	Folded bool `json:"folded"`
}

// Events returns recorded blocked attempts, newest first, explained.
func (e *Engine) Events(ctx context.Context, f store.EventFilter) ([]EventView, error) {
	evs, _, err := e.EventsPage(ctx, f)
	return evs, err
}

// EventsPage is Events for one page: at most f.Limit attempts after f.After,
// and the cursor of the next page ("" when there is none).
func (e *Engine) EventsPage(ctx context.Context, f store.EventFilter) ([]EventView, string, error) {
	evs, next, err := e.store.EventsPage(ctx, f)
	if err != nil {
		return nil, "", err
	}
	p, _, err := e.store.Policy(ctx)
	if err != nil {
		return nil, "", err
	}
	return explainEvents(evs, e.describe(p.Backend)), next, nil
}

// explainEvents explains evs, refused the way desc says.
func explainEvents(evs []store.Event, desc enforce.Description) []EventView {
	refusal := desc.Refusal
	if refusal == "" {
		refusal = "refused"
	}
	out := make([]EventView, len(evs))
	for i, ev := range evs {
		who := ev.User
		if who == "" {
			who = "uid " + strconv.FormatUint(uint64(ev.UID), 10)
		}
		reason := fmt.Sprintf("%s is neither allowed nor has an exception for %s port %d", who, ev.Address, ev.Port)
		var rule string
		switch ev.Action {
		case enforce.ActionHeld:
			out[i] = EventView{Event: ev, BlockedBy: "hold: " + who + "'s allowances and exceptions are suspended (see 'smtpguard status')",
				AllowCommand: "smtpguard release user " + releaseRef(ev)}
			continue
		case enforce.ActionLogged:
			rule = "log rule (mode log): let through, would be rejected in reject mode"
		case enforce.ActionRedirected:
			rule = "redirect rule (mode redirect): sent to the local MTA"
		case enforce.ActionExplained:
			rule = "explain rule (mode explain): answered 554 5.7.1 with the reason by the daemon's responder"
		case enforce.ActionRateLimited:
			rule = "rate limit rule: over its limit, treated as a blocked connection (" + refusal + " in reject mode)"
			reason = fmt.Sprintf("%s may connect, but was over its rate limit (see status: rate_limits)", who)
		default:
			rule = "block rule (mode reject): " + refusal
		}
		out[i] = EventView{Event: ev, BlockedBy: rule + "; " + reason, AllowCommand: AllowCommand(ev), Folded: Folded(ev)}
	}
	return out
}

// UserTotal sums one user's recorded attempts.
type UserTotal struct {
	User         string `json:"user"`
	UID          uint32 `json:"uid"`
	Attempts     int64  `json:"attempts"`
	Destinations int    `json:"destinations"` // distinct address and port pairs
}

// TotalsByUser ranks the users of evs by attempts, most first, then by uid.
func TotalsByUser(evs []EventView) []UserTotal {
	byUID := map[uint32]*UserTotal{}
	dests := map[uint32]map[string]bool{}
	for _, ev := range evs {
		u := byUID[ev.UID]
		if u == nil {
			u = &UserTotal{User: ev.User, UID: ev.UID}
			byUID[ev.UID], dests[ev.UID] = u, map[string]bool{}
		}
		u.Attempts += ev.Count
		// By text: a folded destination (a prefix, "other") counts as one.
		dests[ev.UID][ev.Address+" "+strconv.Itoa(int(ev.Port))] = true
	}
	out := make([]UserTotal, 0, len(byUID))
	for uid, u := range byUID {
		u.Destinations = len(dests[uid])
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b UserTotal) int {
		if c := cmp.Compare(b.Attempts, a.Attempts); c != 0 {
			return c
		}
		return cmp.Compare(a.UID, b.UID)
	})
	return out
}

// AllowCommand is the exact command that would let this attempt through, and
// nothing wider: the one destination on the one port. A folded destination
// names no one address, so it has none.
func AllowCommand(e store.Event) string {
	if Folded(e) || e.Action == enforce.ActionRateLimited { // allowed already: over its rate
		return ""
	}
	who := e.User
	if who == "" {
		who = strconv.FormatUint(uint64(e.UID), 10)
	}
	return "smtpguard allow user " + who + " --to " + e.Address + " --port " + strconv.Itoa(int(e.Port))
}

// Folded reports whether an event's destination stands for several
// addresses (a prefix or "other") rather than one.
func Folded(e store.Event) bool {
	_, err := netip.ParseAddr(e.Address)
	return err != nil
}

// Audit returns the audit log, newest first.
func (e *Engine) Audit(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	return e.store.Audit(ctx, f)
}

// ExceptionStatus is one exception as status shows it, with what its host
// name resolves to.
type ExceptionStatus struct {
	User        string       `json:"user,omitempty"`
	Group       string       `json:"group,omitempty"`
	To          string       `json:"to"`
	Ports       []uint16     `json:"ports"` // empty: every restricted port
	Addresses   []netip.Addr `json:"addresses"`
	ResolvedAt  *time.Time   `json:"resolved_at,omitempty"`
	Unresolved  bool         `json:"unresolved"` // a host name without any answer yet
	LookupError string       `json:"lookup_error,omitempty"`
	// Rate is the exception's own rate limit; empty: the default.
	Rate string `json:"rate,omitempty"`
}

func exceptionStatus(p policy.Policy, dns map[string]store.DNSEntry) []ExceptionStatus {
	out := []ExceptionStatus{}
	for _, e := range p.Exceptions {
		es := ExceptionStatus{To: e.Destination, Ports: e.Ports, Addresses: []netip.Addr{}, Rate: e.Rate.String()}
		if es.Ports == nil {
			es.Ports = []uint16{}
		}
		if e.Principal.Kind == policy.KindGroup {
			es.Group = e.Principal.Ref()
		} else {
			es.User = e.Principal.Ref()
		}
		d, err := policy.ParseDestination(e.Destination)
		switch {
		case err != nil:
			es.Unresolved, es.LookupError = true, err.Error()
		case d.IsHost():
			entry, ok := dns[d.Host]
			if ok && len(entry.Addrs) > 0 {
				es.Addresses = entry.Addrs
				at := entry.ResolvedAt
				es.ResolvedAt = &at
			} else {
				es.Unresolved = true
			}
			es.LookupError = entry.Error
		default:
			es.Addresses = []netip.Addr{d.Prefix.Addr()}
		}
		out = append(out, es)
	}
	return out
}

// describe is the description of the backend named name: "auto" (nothing
// enabled yet) is the best candidate's, an unknown name has none.
func (e *Engine) describe(name string) enforce.Description {
	b, err := e.planBackend(name)
	if err != nil {
		return enforce.Description{}
	}
	return b.Describe()
}

// BackendChoice is one compiled-in backend in status: whether the policy
// uses it, and why (not).
type BackendChoice struct {
	Name   string `json:"name"`
	Active bool   `json:"active"`
	Why    string `json:"why"`
	// Chosen is what the enable that chose the policy's backend said of
	// this one: "auto: bpf probe passed", "auto could not use it: ...",
	// "auto prefers bpf, which works here"; empty when not recorded.
	Chosen string `json:"chosen,omitempty"`
}

// backendChoices explains the stored choice without probing anything
// (status must not touch the kernel's cgroups): what the enable that chose
// it found, stored with the policy.
func (e *Engine) backendChoices(p policy.Policy) []BackendChoice {
	out := []BackendChoice{}
	for _, b := range e.cfg.Backends {
		c := BackendChoice{Name: b.Name()}
		if p.Enabled {
			c.Chosen = p.BackendWhy[b.Name()]
		}
		switch {
		case p.Enabled && p.Backend == b.Name():
			c.Active, c.Why = true, "enabled with this backend"
			if c.Chosen != "" {
				c.Why += " (" + c.Chosen + ")"
			}
		case b.Describe().ExplicitOnly:
			c.Why = "auto does not choose it: use it with enable --backend " + b.Name()
		case p.Enabled && c.Chosen != "":
			c.Why = "not used: " + c.Chosen
		case p.Enabled:
			c.Why = "not used: the restriction was enabled with backend " + p.Backend
		default:
			c.Why = "not used: the restriction is disabled"
		}
		out = append(out, c)
	}
	return out
}
