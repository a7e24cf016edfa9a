// Package engine is the only code that changes smtpguard's state. Every
// operation runs the same steps under a cross-process file lock: validate (bad
// input changes nothing), persist in a transaction, enforce in the kernel, append
// an audit record, commit. If enforcing fails the transaction is rolled back, so
// the stored policy and the kernel never disagree because of a half-applied
// change.
package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/conflicts"
	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/resolve"
	"github.com/smtpguard/smtpguard/internal/store"
)

// DefaultStateDir holds the database and the lock file.
const DefaultStateDir = "/var/lib/smtpguard"

// Config wires an Engine to the system.
type Config struct {
	StateDir   string
	PasswdPath string // default /etc/passwd
	GroupPath  string // default /etc/group
	MTA        mta.Config
	// Backends are the enforcement candidates, best first; "auto" picks the
	// first whose probe passes.
	Backends []enforce.Backend
	Logger   *slog.Logger
	Now      func() time.Time
	// Resolver looks up exception host names (default: /etc/hosts, then the
	// nameservers of /etc/resolv.conf).
	Resolver Resolver
	// Sessions, when set, ends established connections that newly applied
	// rules refuse (rules decide only new connections). nil ends none.
	Sessions SessionEnder
	// Conflicts, when set, finds other tools' SMTP blocks for status.
	Conflicts ConflictDetector
	// Argon2 is the cost of the password hashes of web accounts (default
	// store.DefaultArgon2).
	Argon2 store.Argon2Params
	// NewMTAManager builds the manager of the MTA's limits (default
	// mta.NewManager); tests put a fake MTA here.
	NewMTAManager func(ctx context.Context, opts mta.Options, dir *policy.Directory) (mta.Manager, error)
	// RetriesOwnedElsewhere says the caller makes a change again, through
	// the daemon, when the kernel refuses it with enforce.ErrOwnedElsewhere
	// (a daemon took the rules over while a command started): that refusal
	// is not audited, so the change has one record, the retry's.
	RetriesOwnedElsewhere bool
}

// ConflictDetector finds other tools that also block outgoing SMTP.
type ConflictDetector interface {
	Detect(ctx context.Context) []conflicts.Conflict
}

// SessionEnder ends the established connections a ruleset refuses.
type SessionEnder interface {
	EndDisallowed(ctx context.Context, rs policy.Ruleset) (ended int, err error)
}

// Resolver looks up a host name's addresses and their DNS time-to-live.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]netip.Addr, time.Duration, error)
}

// Engine performs state changes. It is safe for use by one goroutine at a time
// per process; other processes are kept out by the lock file.
type Engine struct {
	cfg     Config
	store   *store.Store
	log     *slog.Logger
	fresh   string    // how the database was found when opened, when absent or empty (guard.go)
	repairs repairLog // rate limit of the daemon's repair records (repair.go)
}

// Open opens the state directory's database.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.PasswdPath == "" {
		cfg.PasswdPath = "/etc/passwd"
	}
	if cfg.GroupPath == "" {
		cfg.GroupPath = "/etc/group"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Argon2 == (store.Argon2Params{}) {
		cfg.Argon2 = store.DefaultArgon2()
	}
	if cfg.NewMTAManager == nil {
		cfg.NewMTAManager = mta.NewManager
	}
	if cfg.Resolver == nil {
		cfg.Resolver = &resolve.Resolver{}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w (use --state-dir or run as root)", cfg.StateDir, err)
	}
	st, dir, fresh, err := openStore(ctx, cfg.StateDir)
	if err != nil {
		return nil, err
	}
	cfg.StateDir = dir // checked, links resolved: a link in the path cannot be repointed later
	return &Engine{cfg: cfg, store: st, log: cfg.Logger.With("component", "engine"), fresh: fresh}, nil
}

// Close releases the database.
func (e *Engine) Close() error { return e.store.Close() }

// Store exposes the database for reading only: every write is an engine
// operation.
func (e *Engine) Store() store.View { return e.store.View() }

// Actor is who asks for a change, for the audit log.
type Actor struct {
	Name   string // "root", "alice via sudo", "web:alice", "api:deploy"
	Source string // "cli", "web", "api", "daemon"
	Remote string // client address for web and API
}

// Result describes a completed operation.
type Result struct {
	Changed bool
	Message string // one line for people: "user alice allowed"
	Policy  policy.Policy
}

// ErrValidation marks errors caused by the caller's input; nothing changed.
var ErrValidation = errors.New("invalid input")

func invalid(err error) error { return fmt.Errorf("%w: %w", ErrValidation, err) }

// IsValidation reports whether err is bad input rather than a system failure.
func IsValidation(err error) bool { return errors.Is(err, ErrValidation) }

// Directory reads the system's users and groups.
func (e *Engine) Directory() (*policy.Directory, error) {
	pw, err := os.Open(e.cfg.PasswdPath)
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	defer pw.Close()
	gr, err := os.Open(e.cfg.GroupPath)
	if err != nil {
		return nil, fmt.Errorf("read groups: %w", err)
	}
	defer gr.Close()
	return policy.ParseDirectory(pw, gr)
}

// AccountFiles are the files whose changes alter who may connect.
func (e *Engine) AccountFiles() []string { return []string{e.cfg.PasswdPath, e.cfg.GroupPath} }

// Backends returns the enforcement candidates the engine was configured with.
func (e *Engine) Backends() []enforce.Backend { return e.cfg.Backends }

// view is the system state a policy is resolved against.
type view struct {
	dir *policy.Directory
	dns map[string]store.DNSEntry // last good answers for exception host names
	// held are the uids on hold now: ordinary users whatever the policy
	// allows them (holds.go).
	held []uint32
}

// Resolve computes who may connect under p on this host now, and where.
func (e *Engine) resolve(ctx context.Context, p policy.Policy, v view) (policy.Resolution, mta.Detection) {
	det := mta.Detect(ctx, e.cfg.MTA, v.dir)
	res := policy.Resolve(p, v.dir, det.SystemUsers())
	var unresolved []string
	res.Exceptions, unresolved = policy.ResolveExceptions(p, v.dir, func(host string) ([]netip.Addr, bool) {
		entry, ok := v.dns[host]
		return entry.Addrs, ok && len(entry.Addrs) > 0
	})
	res.Unresolved = append(res.Unresolved, unresolved...)
	return res, det
}

// currentView reads the accounts and the DNS cache.
func (e *Engine) currentView(ctx context.Context) (view, error) {
	dir, err := e.Directory()
	if err != nil {
		return view{}, err
	}
	dns, err := e.store.DNSCache(ctx)
	if err != nil {
		return view{}, err
	}
	held, err := e.heldUIDs(ctx, e.store)
	if err != nil {
		return view{}, err
	}
	return view{dir: dir, dns: dns, held: held}, nil
}

func (e *Engine) backend(name string) (enforce.Backend, error) {
	for _, b := range e.cfg.Backends {
		if b.Name() == name {
			return b, nil
		}
	}
	return nil, fmt.Errorf("backend %q is not available in this build", name)
}

// change runs one state change: edit produces the new policy from the old.
// dnsUpdates are lookups made for this change, stored with it.
func (e *Engine) change(ctx context.Context, actor Actor, op, detail string,
	edit func(p *policy.Policy, dir *policy.Directory) (string, error), dnsUpdates ...store.DNSEntry) (Result, error) {
	return e.changeWith(ctx, actor, op, detail, changeOptions{}, edit, dnsUpdates...)
}

// changeOptions adjust change for one operation.
type changeOptions struct {
	// removeLeftovers removes every rule of a policy that stays disabled,
	// under the lock, so a concurrent enable cannot be wiped from the kernel
	// after it committed.
	removeLeftovers bool
	// also writes more state in the change's transaction (the hold
	// settings of SetSettings), so it commits or rolls back with the
	// policy and is covered by the same audit record; it reports whether
	// it changed anything.
	also func(ctx context.Context, tx *store.Tx) (bool, error)
}

func (e *Engine) changeWith(ctx context.Context, actor Actor, op, detail string, opts changeOptions,
	edit func(p *policy.Policy, dir *policy.Directory) (string, error), dnsUpdates ...store.DNSEntry) (Result, error) {
	dir, tx, end, err := e.beginChange(ctx)
	if err != nil {
		return Result{}, err
	}
	defer end()
	before, meta, err := tx.Policy(ctx)
	if err != nil {
		return Result{}, err
	}
	if err := e.guardChange(ctx, op, meta); err != nil {
		return Result{}, err
	}
	for _, d := range dnsUpdates {
		if err := tx.PutDNS(ctx, d); err != nil {
			return Result{}, err
		}
	}
	dns, err := tx.DNSCache(ctx)
	if err != nil {
		return Result{}, err
	}
	held, err := e.heldUIDs(ctx, tx)
	if err != nil {
		return Result{}, err
	}
	v := view{dir: dir, dns: dns, held: held}
	after := before.Clone()
	msg, err := edit(&after, dir)
	if err != nil {
		return Result{}, err
	}
	if err := policy.Validate(after, dir); err != nil {
		return Result{}, invalid(err)
	}
	alsoChanged := false
	if opts.also != nil {
		if alsoChanged, err = opts.also(ctx, tx); err != nil {
			return Result{}, err
		}
	}
	if after.Equal(before) {
		// Nothing to persist, but make the kernel match anyway: re-running a
		// command is how an administrator repairs a flushed ruleset.
		if err := e.enforce(ctx, before, after, v); err != nil {
			return Result{}, err
		}
		removed := false
		if opts.removeLeftovers && !after.Enabled {
			left, err := e.present(ctx)
			if err != nil {
				return Result{}, err
			}
			if err := e.remove(ctx, after.Backend); err != nil {
				return Result{}, err
			}
			removed = len(left) > 0
		}
		if removed {
			// Rules were lifted (a lost database's, or leftovers): that is a
			// change of what is enforced, so it is stored and audited, and
			// the database now says "disabled" on purpose.
			now := e.cfg.Now()
			if _, err := tx.PutPolicy(ctx, after, now, actor.Name); err != nil {
				return Result{}, err
			}
			if err := tx.AppendAudit(ctx, store.AuditRecord{
				At: now, Actor: actor.Name, Source: actor.Source, Remote: actor.Remote,
				Operation: op, Detail: "removed smtpguard's rules left in the kernel", Before: policyJSON(before), After: policyJSON(after), Outcome: "ok",
			}); err != nil {
				return Result{}, err
			}
			msg = "SMTP restriction disabled: smtpguard's rules left in the kernel were removed"
		} else if alsoChanged {
			if err := tx.AppendAudit(ctx, store.AuditRecord{
				At: e.cfg.Now(), Actor: actor.Name, Source: actor.Source, Remote: actor.Remote,
				Operation: op, Detail: detail, Outcome: "ok",
			}); err != nil {
				return Result{}, err
			}
		}
		if err := tx.Commit(); err != nil { // keeps fresh DNS answers
			return Result{}, err
		}
		return Result{Changed: removed || alsoChanged, Message: msg, Policy: after}, nil
	}
	now := e.cfg.Now()
	if _, err := tx.PutPolicy(ctx, after, now, actor.Name); err != nil {
		return Result{}, err
	}
	rec := store.AuditRecord{
		At: now, Actor: actor.Name, Source: actor.Source, Remote: actor.Remote,
		Operation: op, Detail: detail, Before: policyJSON(before), After: policyJSON(after), Outcome: "ok",
	}
	if err := e.enforce(ctx, before, after, v); err != nil {
		rec.After = rec.Before
		e.auditFailed(ctx, tx, rec, err)
		return Result{}, err
	}
	if err := commitAudited(ctx, tx, rec, func() error { return e.restore(ctx, before, after, v) }); err != nil {
		return Result{}, err
	}
	e.log.Info("policy changed", "operation", op, "detail", detail, "actor", actor.Name, "source", actor.Source)
	return Result{Changed: true, Message: msg, Policy: after}, nil
}

// beginChange starts a change: the state lock, the accounts as they are now
// and one transaction. end rolls back what was not committed, then unlocks.
func (e *Engine) beginChange(ctx context.Context) (dir *policy.Directory, tx *store.Tx, end func(), err error) {
	unlock, err := lockFile(ctx, filepath.Join(e.cfg.StateDir, "lock"))
	if err != nil {
		return nil, nil, nil, err
	}
	if dir, err = e.Directory(); err == nil {
		tx, err = e.store.Begin(ctx)
	}
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return dir, tx, func() { tx.Rollback(); unlock() }, nil
}

// auditFailed records rec as failed with err: tx, which must not commit
// now, is rolled back and the record goes to the audit log on its own.
func (e *Engine) auditFailed(ctx context.Context, tx *store.Tx, rec store.AuditRecord, err error) {
	tx.Rollback()
	if e.cfg.RetriesOwnedElsewhere && errors.Is(err, enforce.ErrOwnedElsewhere) {
		return // the caller's retry is audited
	}
	rec.Outcome = "failed: " + err.Error()
	if aerr := e.store.AppendAudit(ctx, rec); aerr != nil {
		e.log.Error("cannot record failed change in the audit log", "err", aerr)
	}
}

// commitAudited commits tx with its audit record rec; when the database
// refuses either, restore puts the kernel back as it was.
func commitAudited(ctx context.Context, tx *store.Tx, rec store.AuditRecord, restore func() error) error {
	if err := tx.AppendAudit(ctx, rec); err != nil {
		return errors.Join(err, restore())
	}
	if err := tx.Commit(); err != nil {
		return errors.Join(err, restore())
	}
	return nil
}

// restore puts the kernel back to before after the database refused after.
func (e *Engine) restore(ctx context.Context, before, after policy.Policy, v view) error {
	if err := e.enforce(ctx, after, before, v); err != nil {
		return fmt.Errorf("restore previous rules: %w (run 'smtpguard status' and re-run the command)", err)
	}
	return nil
}

// enforce moves the kernel from before to after.
func (e *Engine) enforce(ctx context.Context, before, after policy.Policy, v view) error {
	if !after.Enabled {
		if before.Enabled {
			return e.remove(ctx, before.Backend)
		}
		return nil
	}
	b, err := e.backend(after.Backend)
	if err != nil {
		return err
	}
	res, _ := e.resolve(ctx, after, v)
	rs := compile(after, res, v)
	if err := b.Apply(ctx, rs); err != nil {
		return fmt.Errorf("enforce with %s: %w", b.Name(), err)
	}
	if before.Enabled && before.Backend != after.Backend {
		if err := e.removeExcept(ctx, before.Backend, b); err != nil {
			// Never leave two backends enforcing, nor the old one half
			// removed: go back to the old one as it was.
			return errors.Join(err, e.undoSwitch(ctx, b, before, v))
		}
	}
	e.endSessions(ctx, rs)
	return nil
}

// undoSwitch puts the kernel back to before after switching from before's
// backend to b failed half-way: b's rules out, before's back in.
func (e *Engine) undoSwitch(ctx context.Context, b enforce.Backend, before policy.Policy, v view) error {
	var errs []error
	if err := b.Remove(ctx); err != nil {
		errs = append(errs, fmt.Errorf("remove %s rules: %w", b.Name(), err))
	}
	if old, err := e.backend(before.Backend); err == nil {
		res, _ := e.resolve(ctx, before, v)
		if err := old.Apply(ctx, compile(before, res, v)); err != nil {
			errs = append(errs, fmt.Errorf("re-apply %s rules: %w", old.Name(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore the previous backend's rules: %w (run 'smtpguard status' and re-run the command)", err)
	}
	return nil
}

// remove takes a backend's rules out of the kernel. A backend name this build
// does not know (or "auto") means every candidate removes what it may have.
func (e *Engine) remove(ctx context.Context, name string) error {
	return e.removeExcept(ctx, name, nil)
}

// removeExcept is remove, sparing keep (the backend just applied).
func (e *Engine) removeExcept(ctx context.Context, name string, keep enforce.Backend) error {
	var errs []error
	for _, b := range e.cfg.Backends {
		if name != b.Name() && name != policy.BackendAuto && !e.unknownBackend(name) {
			continue
		}
		if keep != nil && b.Name() == keep.Name() {
			continue
		}
		if err := b.Remove(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove %s rules: %w", b.Name(), err))
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) unknownBackend(name string) bool {
	_, err := e.backend(name)
	return err != nil
}

// endSessions ends connections opened before rs that rs refuses. The rules
// are in force whatever happens here, so a failure is logged, not returned.
func (e *Engine) endSessions(ctx context.Context, rs policy.Ruleset) {
	if e.cfg.Sessions == nil {
		return
	}
	n, err := e.cfg.Sessions.EndDisallowed(ctx, rs)
	if n > 0 {
		e.log.Info("ended established connections that the rules now refuse", "connections", n)
	}
	if err != nil {
		e.log.Warn("cannot end established SMTP connections that the rules now refuse; they last until they close", "ended", n, "err", err)
	}
}

func policyJSON(p policy.Policy) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.Encode(policy.ToFile(p))
	return strings.TrimSpace(buf.String())
}
