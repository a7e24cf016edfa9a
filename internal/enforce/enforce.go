// Package enforce is the seam between smtpguard's desired state and the kernel:
// the Backend interface every enforcement mechanism implements, and the choice
// of backend for a host.
package enforce

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// ErrNotSupported is returned (wrapped) when a backend cannot work on this host
// or in this build.
var ErrNotSupported = errors.New("not supported on this host")

// ErrOwnedElsewhere is returned (wrapped) when another process owns the
// kernel objects, so the kernel refuses our changes: while the daemon runs it
// owns them, and changes must go through it.
var ErrOwnedElsewhere = errors.New("the running smtpguard daemon owns the kernel rules: make this change through the daemon (smtpguard serve), or stop it first")

// Backend renders a policy.Ruleset into kernel state. Implementations own their
// kernel objects entirely (one nftables table, one set of pins) and never touch
// anything else.
type Backend interface {
	// Name is the backend's CLI name ("nft").
	Name() string
	// Probe proves the backend works here by doing something harmless with it.
	// It returns an error wrapping ErrNotSupported when it cannot.
	Probe(ctx context.Context) error
	// Apply makes the kernel enforce rs, atomically: after an error the kernel
	// still enforces what it did before.
	Apply(ctx context.Context, rs policy.Ruleset) error
	// Remove deletes everything the backend installed. Removing what is not
	// there is success.
	Remove(ctx context.Context) error
	// Present reports whether any of the backend's kernel objects exist,
	// whatever they hold: status reports leftovers of a disabled policy with
	// it, and the engine refuses to treat a lost database as "disabled"
	// while they exist. A backend that cannot work on this host returns an
	// error wrapping ErrNotSupported.
	Present(ctx context.Context) (bool, error)
	// Verify compares the kernel with rs and describes every difference.
	Verify(ctx context.Context, rs policy.Ruleset) (Drift, error)
	// Render describes rs as the backend would install it, in the backend's
	// own syntax, for plan output and logs.
	Render(rs policy.Ruleset) string
	// Watch calls changed whenever the kernel objects the backend owns may
	// have been changed, by anyone, until ctx ends. It lets the daemon repair
	// drift within milliseconds instead of waiting for a periodic check.
	Watch(ctx context.Context, changed func()) error
	// Events delivers blocked (or logged) connection attempts to sink until
	// ctx ends. sink must not block: the kernel path never waits for us.
	Events(ctx context.Context, sink func(Event)) error
	// Describe states the backend's facts for status, event explanations
	// and the daemon. It needs no kernel and never fails.
	Describe() Description
}

// AllowedCounter is implemented by backends that count the connections
// they let through to restricted ports per uid, for
// smtpguard_allowed_connections_total and status. The counts only grow
// while the backend's objects exist.
type AllowedCounter interface {
	AllowedConnections(ctx context.Context) (map[uint32]uint64, error)
}

// Description is what a backend says of itself, so that nothing outside it
// has to know which backend it is.
type Description struct {
	// Covers says in one line whose connections the backend sees.
	Covers string
	// Limitations are the ways around the restriction this backend cannot
	// close, as measured by the bypass tests (test/e2e), stated so nobody
	// mistakes them for covered.
	Limitations []string
	// Refusal is how a refused connection looks to the program that made
	// it: "refused with a TCP reset".
	Refusal string
	// ChangeNotifications is set when Watch reports changes of the kernel
	// objects as they happen. Without them Watch returns ErrNotSupported at
	// once and the daemon relies on its periodic verify.
	ChangeNotifications bool
	// AttachesToCgroup is set when the backend enforces for one cgroup
	// and its descendants (bpf), which the policy then names (Cgroup).
	AttachesToCgroup bool
	// ExplicitOnly keeps "auto" from choosing the backend: it is used only
	// when named. No backend of this build sets it (bpf did until auto
	// preferred it).
	ExplicitOnly bool
}

// Event is one connection attempt the block rule saw.
type Event struct {
	Time    time.Time
	UID     uint32
	HasUID  bool // false when the kernel reported no socket owner
	Family  int  // 4 or 6
	Dst     netip.Addr
	DstPort uint16
	Action  string // ActionBlocked or ActionLogged
	// PID and TGID are the calling thread and its process, Comm the
	// thread's name, where the backend knows them (bpf); 0 and "" where it
	// cannot (nft sees packets, not processes). The daemon names the
	// process further from /proc/TGID.
	PID  uint32
	TGID uint32
	Comm string
	// LostReason says why the kernel dropped events, for an ActionLost
	// event: the reason label of smtpguard_events_dropped_total
	// (LostRingFull), empty for "kernel".
	LostReason string
}

// LostRingFull is the LostReason of events a ring buffer had no room for.
const LostRingFull = "ring_full"

// The actions an Event reports.
const (
	ActionBlocked    = "blocked"
	ActionLogged     = "logged"
	ActionRedirected = "redirected"
	// ActionExplained: sent to the explain responder, which told the
	// client why in an SMTP reply.
	ActionExplained = "explained"
	// ActionRateLimited: an allowed uid over its rate limit, refused as a
	// blocked one would be.
	ActionRateLimited = "rate-limited"
	// ActionHeld: a uid was put on hold (its allowances suspended).
	ActionHeld = "held"
	// ActionLost marks a gap: the kernel dropped events it could not queue.
	ActionLost = "lost"
)

// Drift lists the differences between the kernel and the desired ruleset. No
// problems means in sync.
type Drift struct {
	Problems []string `json:"problems,omitempty"`
}

// InSync reports whether the kernel matches.
func (d Drift) InSync() bool { return len(d.Problems) == 0 }

// String summarises the drift on one line.
func (d Drift) String() string {
	if d.InSync() {
		return "in sync"
	}
	return strings.Join(d.Problems, "; ")
}

// Choose picks the backend for "enable --backend requested": Select's
// backend and the reason it was chosen, for the log.
func Choose(ctx context.Context, requested string, candidates []Backend) (Backend, string, error) {
	c, err := Select(ctx, requested, candidates)
	if err != nil {
		return nil, "", err
	}
	return c.Backend, c.Reason, nil
}

// Choice is the outcome of Select: the backend, why it was chosen, and why
// each other candidate was not, for status.
type Choice struct {
	Backend Backend
	Reason  string
	// NotChosen maps the name of every other candidate to why it was not
	// chosen: its probe's error when auto tried it first, else that it was
	// not needed or not asked for.
	NotChosen map[string]string
}

// Notes is the choice as stored with the policy: backend name -> why it
// was or was not chosen.
func (c Choice) Notes() map[string]string {
	out := make(map[string]string, len(c.NotChosen)+1)
	for k, v := range c.NotChosen {
		out[k] = v
	}
	out[c.Backend.Name()] = c.Reason
	return out
}

// Select picks the backend for "enable --backend requested". An explicit
// name must exist and its probe must pass. "auto" takes the first candidate,
// in the order given (best first), whose probe passes, skipping backends
// that are ExplicitOnly; candidates after it are not probed.
func Select(ctx context.Context, requested string, candidates []Backend) (Choice, error) {
	if requested != policy.BackendAuto {
		for _, b := range candidates {
			if b.Name() != requested {
				continue
			}
			if err := b.Probe(ctx); err != nil {
				return Choice{}, fmt.Errorf("backend %s cannot be used here: %w", requested, err)
			}
			c := Choice{Backend: b, Reason: "requested explicitly", NotChosen: map[string]string{}}
			for _, o := range candidates {
				if o.Name() != requested {
					c.NotChosen[o.Name()] = "the restriction was enabled with backend " + requested
				}
			}
			return c, nil
		}
		names := make([]string, 0, len(candidates)+1)
		names = append(names, policy.BackendAuto)
		for _, b := range candidates {
			names = append(names, b.Name())
		}
		return Choice{}, fmt.Errorf("unknown backend %q: use %s", requested, strings.Join(names, ", "))
	}
	var errs []error
	notChosen := map[string]string{}
	for i, b := range candidates {
		if b.Describe().ExplicitOnly {
			notChosen[b.Name()] = "auto does not choose it: use it with enable --backend " + b.Name()
			continue
		}
		err := b.Probe(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.Name(), err))
			notChosen[b.Name()] = "auto could not use it: " + err.Error()
			continue
		}
		for _, o := range candidates[i+1:] {
			if _, said := notChosen[o.Name()]; !said && !o.Describe().ExplicitOnly {
				notChosen[o.Name()] = "auto prefers " + b.Name() + ", which works here"
			} else if !said {
				notChosen[o.Name()] = "auto does not choose it: use it with enable --backend " + o.Name()
			}
		}
		return Choice{Backend: b, Reason: fmt.Sprintf("auto: %s probe passed", b.Name()), NotChosen: notChosen}, nil
	}
	return Choice{}, fmt.Errorf("no enforcement backend works on this host (%w)", errors.Join(errs...))
}
