package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// A hold suspends one uid's allowances, exceptions and rate limit: while it
// lasts the uid is an ordinary user. The stored policy is untouched; every
// ruleset is compiled through compile, which drops the held uids, so the
// end of a hold restores exactly what the policy says.

// EscalateAfter holds in EscalateWindow make a hold last until released, as
// MailChannels and SpamExperts do with repeat offenders.
const (
	EscalateAfter  = 3
	EscalateWindow = 24 * time.Hour
)

// MaxHoldAfter is the largest N of hold-after N/PERIOD: the daemon keeps
// the time of up to N attempts per uid, to count a sliding window exactly.
const MaxHoldAfter = 1000

// compile is policy.Compile for the system as v sees it: held uids are
// ordinary users.
func compile(p policy.Policy, res policy.Resolution, v view) policy.Ruleset {
	return policy.Compile(p, res).WithoutUIDs(v.held)
}

type holdReader interface {
	ActiveHolds(ctx context.Context, now time.Time) ([]store.Hold, error)
}

// heldUIDs are the uids on hold now, sorted.
func (e *Engine) heldUIDs(ctx context.Context, q holdReader) ([]uint32, error) {
	holds, err := q.ActiveHolds(ctx, e.cfg.Now())
	if err != nil {
		return nil, err
	}
	uids := make([]uint32, 0, len(holds))
	for _, h := range holds {
		uids = append(uids, h.UID)
	}
	slices.Sort(uids)
	return slices.Compact(uids), nil
}

// HoldRequest is one hold to start.
type HoldRequest struct {
	// User is the account's name or uid.
	User string
	// For is how long the hold lasts: nil takes the hold-for setting, zero
	// means until released.
	For    *time.Duration
	Reason string
	// Threshold, for an automatic hold, names what held ("hold-after
	// 10/m") instead of the actor, and Count the attempts it counted.
	Threshold string
	Count     int64
}

// HeldUser is an active hold as status and the API show it.
type HeldUser struct {
	User  string    `json:"user"`
	UID   uint32    `json:"uid"`
	Since time.Time `json:"since"`
	// Until is null for a hold that lasts until released.
	Until  *time.Time `json:"until"`
	Reason string     `json:"reason"`
	By     string     `json:"by"`
	Count  int64      `json:"count,omitempty"`
}

func heldUser(h store.Hold) HeldUser {
	u := HeldUser{User: h.User, UID: h.UID, Since: h.Since, Reason: h.Reason, By: h.By, Count: h.Count}
	if !h.Until.IsZero() {
		until := h.Until
		u.Until = &until
	}
	return u
}

// Holds lists the holds active now, oldest first.
func (e *Engine) Holds(ctx context.Context) ([]HeldUser, error) {
	holds, err := e.store.ActiveHolds(ctx, e.cfg.Now())
	if err != nil {
		return nil, err
	}
	out := make([]HeldUser, 0, len(holds))
	for _, h := range holds {
		out = append(out, heldUser(h))
	}
	return out, nil
}

// actorBy names an actor as a hold records it: "cli:root", "web:admin".
func actorBy(a Actor) string {
	if strings.Contains(a.Name, ":") || a.Source == "" {
		return a.Name
	}
	return a.Source + ":" + a.Name
}

// holdTarget resolves ref to the uid to hold or release, refusing accounts
// that may never be held: root and the MTA's and list manager's users.
func (e *Engine) holdTarget(ctx context.Context, dir *policy.Directory, ref string) (uint32, string, error) {
	pr, err := dir.ResolvePrincipal(policy.KindUser, ref)
	if err != nil {
		return 0, "", invalid(err)
	}
	name := pr.Name
	if pr.ID == 0 {
		return 0, "", invalid(errors.New("root (uid 0) cannot be held: smtpguard always lets root connect"))
	}
	for _, s := range mta.Detect(ctx, e.cfg.MTA, dir).SystemUsers() {
		if a, ok := dir.User(s.Name); ok && a.UID == pr.ID {
			return 0, "", invalid(fmt.Errorf("user %s (uid %d) is the %s's account and cannot be held: mail would stop", a.Name, a.UID, s.Reason))
		}
	}
	return pr.ID, name, nil
}

// HoldTarget checks that ref names an account that may be held and returns
// its uid and name, with Hold's errors: the web UI asks before holding, and
// asks only about a hold that can happen.
func (e *Engine) HoldTarget(ctx context.Context, ref string) (uint32, string, error) {
	dir, err := e.Directory()
	if err != nil {
		return 0, "", err
	}
	return e.holdTarget(ctx, dir, ref)
}

func userLabel(name string, uid uint32) string {
	if name == "" {
		return "uid " + strconv.FormatUint(uint64(uid), 10)
	}
	return fmt.Sprintf("user %s (uid %d)", name, uid)
}

// Hold puts a user on hold: its allowances and exceptions are suspended at
// once (established connections they allowed are ended) until the hold ends.
// The third hold of a uid within EscalateWindow lasts until released.
// Holding a user already on hold changes nothing.
func (e *Engine) Hold(ctx context.Context, actor Actor, req HoldRequest) (Result, error) {
	if req.For != nil && *req.For < 0 {
		return Result{}, invalid(fmt.Errorf("--for %s: the duration must not be negative (0 holds until released)", *req.For))
	}
	reason := strings.TrimSpace(req.Reason)
	if len(reason) > 500 {
		return Result{}, invalid(errors.New("--reason: at most 500 characters"))
	}
	// Status, the audit log and notifications show it on one line, and
	// status prints it to a terminal.
	if strings.ContainsFunc(reason, unicode.IsControl) {
		return Result{}, invalid(errors.New("--reason: one line of text, without control characters"))
	}
	return e.holdChange(ctx, actor, "hold", func(tx *store.Tx, dir *policy.Directory, now time.Time) (holdEdit, error) {
		uid, name, err := e.holdTarget(ctx, dir, req.User)
		if err != nil {
			return holdEdit{}, err
		}
		label := userLabel(name, uid)
		active, err := tx.ActiveHolds(ctx, now)
		if err != nil {
			return holdEdit{}, err
		}
		for _, h := range active {
			if h.UID == uid {
				return holdEdit{msg: label + " is already held " + untilText(h.Until)}, nil
			}
		}
		settings, err := tx.HoldSettings(ctx)
		if err != nil {
			return holdEdit{}, err
		}
		d := settings.For
		if req.For != nil {
			d = *req.For
		}
		h := store.Hold{UID: uid, User: name, Since: now, Reason: reason, By: actorBy(actor), Count: req.Count}
		if req.Threshold != "" {
			h.By = req.Threshold
		}
		if d > 0 {
			h.Until = now.Add(d)
		}
		past, err := tx.HoldHistory(ctx, uid, now.Add(-EscalateWindow))
		if err != nil {
			return holdEdit{}, err
		}
		if len(past)+1 >= EscalateAfter && !h.Until.IsZero() {
			h.Until = time.Time{}
			h.Reason = strings.TrimPrefix(h.Reason+fmt.Sprintf("; held %d times within %d hours: until released", len(past)+1, int(EscalateWindow.Hours())), "; ")
		}
		if h.Reason == "" {
			h.Reason = "held by " + h.By
		}
		if h.ID, err = tx.InsertHold(ctx, h); err != nil {
			return holdEdit{}, err
		}
		detail := label + " held " + untilText(h.Until) + ": " + h.Reason
		if req.Threshold != "" {
			detail += fmt.Sprintf(" (threshold %s, %d attempts)", req.Threshold, req.Count)
		}
		return holdEdit{changed: true, msg: detail, detail: detail, record: holdJSON(h)}, nil
	})
}

// Release ends a user's hold, restoring its allowances and exceptions. ref
// is the name or uid; releasing a user not on hold changes nothing.
func (e *Engine) Release(ctx context.Context, actor Actor, ref string) (Result, error) {
	return e.holdChange(ctx, actor, "release", func(tx *store.Tx, dir *policy.Directory, now time.Time) (holdEdit, error) {
		pr, err := dir.ResolvePrincipal(policy.KindUser, ref)
		if err != nil {
			return holdEdit{}, invalid(err)
		}
		label := userLabel(pr.Name, pr.ID)
		released, err := tx.ReleaseHolds(ctx, pr.ID, now, actorBy(actor))
		if err != nil {
			return holdEdit{}, err
		}
		if len(released) == 0 {
			return holdEdit{msg: label + " is not held"}, nil
		}
		detail := label + " released"
		return holdEdit{changed: true, msg: detail, detail: detail, record: holdJSON(released[0])}, nil
	})
}

// ExpireHolds ends the holds whose time ran out, for the daemon's timer,
// as one change: one audit record names every hold it ended. Nothing
// expired is no change.
func (e *Engine) ExpireHolds(ctx context.Context) (Result, error) {
	actor := Actor{Name: "expiry", Source: "daemon"}
	return e.holdChange(ctx, actor, "release", func(tx *store.Tx, _ *policy.Directory, now time.Time) (holdEdit, error) {
		expired, err := tx.ExpireHolds(ctx, now)
		if err != nil || len(expired) == 0 {
			return holdEdit{}, err
		}
		var labels []string
		for _, h := range expired {
			labels = append(labels, userLabel(h.User, h.UID))
		}
		detail := "hold ended (expired): " + strings.Join(labels, ", ")
		return holdEdit{changed: true, msg: detail, detail: detail, record: holdJSON(expired...)}, nil
	})
}

// NextHoldEnd is when the earliest active timed hold ends; zero when none
// will end by itself.
func (e *Engine) NextHoldEnd(ctx context.Context) (time.Time, error) {
	holds, err := e.store.ActiveHolds(ctx, e.cfg.Now())
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, h := range holds {
		if !h.Until.IsZero() && (next.IsZero() || h.Until.Before(next)) {
			next = h.Until
		}
	}
	return next, nil
}

// TakeHoldNotices returns the hold starts and ends nobody has announced yet
// and marks them announced, so each is announced once across restarts.
func (e *Engine) TakeHoldNotices(ctx context.Context) ([]store.HoldNoticeRow, error) {
	tx, err := e.store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.TakeHoldNotices(ctx)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	return rows, tx.Commit()
}

// holdEdit is what a hold operation did inside its transaction.
type holdEdit struct {
	changed bool
	msg     string
	detail  string // for the audit record
	record  string // the holds concerned, as JSON, for the audit record
}

// holdChange runs one hold operation as engine.change runs policy edits:
// under the lock, in one transaction with its audit record, committed only
// once the kernel enforces the new set of held uids.
func (e *Engine) holdChange(ctx context.Context, actor Actor, op string,
	edit func(tx *store.Tx, dir *policy.Directory, now time.Time) (holdEdit, error)) (Result, error) {
	dir, tx, end, err := e.beginChange(ctx)
	if err != nil {
		return Result{}, err
	}
	defer end()
	p, _, err := tx.Policy(ctx)
	if err != nil {
		return Result{}, err
	}
	dns, err := tx.DNSCache(ctx)
	if err != nil {
		return Result{}, err
	}
	heldBefore, err := e.heldUIDs(ctx, tx)
	if err != nil {
		return Result{}, err
	}
	now := e.cfg.Now()
	ed, err := edit(tx, dir, now)
	if err != nil || !ed.changed {
		return Result{Message: ed.msg, Policy: p}, err
	}
	heldAfter, err := e.heldUIDs(ctx, tx)
	if err != nil {
		return Result{}, err
	}
	before := view{dir: dir, dns: dns, held: heldBefore}
	after := view{dir: dir, dns: dns, held: heldAfter}
	rec := store.AuditRecord{
		At: now, Actor: actor.Name, Source: actor.Source, Remote: actor.Remote,
		Operation: op, Detail: ed.detail, After: ed.record, Outcome: "ok",
	}
	var rs policy.Ruleset
	// Applied even when the held uids look the same: a hold that expired
	// is no longer active at now, yet the kernel still enforces it.
	enforcing := p.Enabled
	if enforcing {
		res, _ := e.resolve(ctx, p, after)
		rs = compile(p, res, after)
		if err := e.applyRuleset(ctx, p.Backend, rs); err != nil {
			e.auditFailed(ctx, tx, rec, err)
			return Result{}, err
		}
	}
	restore := func() error {
		if !enforcing {
			return nil
		}
		res, _ := e.resolve(ctx, p, before)
		if err := e.applyRuleset(ctx, p.Backend, compile(p, res, before)); err != nil {
			return fmt.Errorf("restore previous rules: %w (run 'smtpguard status' and re-run the command)", err)
		}
		return nil
	}
	if err := commitAudited(ctx, tx, rec, restore); err != nil {
		return Result{}, err
	}
	if enforcing {
		e.endSessions(ctx, rs)
	}
	e.log.Info("holds changed", "operation", op, "detail", ed.detail, "actor", actor.Name, "source", actor.Source)
	return Result{Changed: true, Message: ed.msg, Policy: p}, nil
}

func (e *Engine) applyRuleset(ctx context.Context, backend string, rs policy.Ruleset) error {
	b, err := e.backend(backend)
	if err != nil {
		return err
	}
	if err := b.Apply(ctx, rs); err != nil {
		return fmt.Errorf("enforce with %s: %w", b.Name(), err)
	}
	return nil
}

// SetHoldAfter sets the automatic hold's threshold: "N/PERIOD" refused or
// rate-limited attempts of one uid within PERIOD, or "off".
func (e *Engine) SetHoldAfter(ctx context.Context, actor Actor, v string) (Result, error) {
	r, err := parseHoldAfter(v)
	if err != nil {
		return Result{}, err
	}
	return e.setHolds(ctx, actor, "hold-after "+r.String(), func(hs *store.HoldSettings) string {
		hs.After = r
		return holdAfterText(r)
	})
}

// parseHoldAfter reads set hold-after's value, with the CLI's errors.
func parseHoldAfter(v string) (policy.Rate, error) {
	r, err := policy.ParseRate(v)
	if err != nil {
		return policy.Rate{}, invalid(fmt.Errorf("hold-after: %w", err))
	}
	if r.Count > MaxHoldAfter {
		return policy.Rate{}, invalid(fmt.Errorf("hold-after %s: at most %d attempts (the daemon keeps each one's time)", v, MaxHoldAfter))
	}
	return r, nil
}

func holdAfterText(r policy.Rate) string {
	if r.IsZero() {
		return "automatic hold off"
	}
	return fmt.Sprintf("automatic hold after %d refused or rate-limited attempts in %s", r.Count, durationText(r.Period))
}

func holdForText(d time.Duration) string {
	if d == 0 {
		return "holds last until released"
	}
	return "holds last " + durationText(d)
}

// SetHoldFor sets how long a hold lasts when nobody says: a duration
// ("30m", "2h", "1d"), or 0 for until released.
func (e *Engine) SetHoldFor(ctx context.Context, actor Actor, v string) (Result, error) {
	d, err := ParseHoldDuration(v)
	if err != nil {
		return Result{}, invalid(fmt.Errorf("hold-for: %w", err))
	}
	return e.setHolds(ctx, actor, "hold-for "+durationText(d), func(hs *store.HoldSettings) string {
		hs.For = d
		return holdForText(d)
	})
}

// ParseHoldDuration reads a hold's length: a Go duration ("90m", "2h"), a
// number of days ("1d"), or 0 for until released.
func ParseHoldDuration(v string) (time.Duration, error) {
	s := strings.TrimSpace(strings.ToLower(v))
	if s == "0" {
		return 0, nil
	}
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok && n != "" && !strings.ContainsAny(n, "hmsuµn") {
		var days float64
		days, err = strconv.ParseFloat(n, 64)
		d = time.Duration(days * float64(24*time.Hour))
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 || d > 3650*24*time.Hour {
		return 0, fmt.Errorf("invalid duration %q: write e.g. 30m, 2h or 1d, or 0 for until released", v)
	}
	if d > 0 && d < time.Second {
		return 0, fmt.Errorf("invalid duration %q: at least 1s (0 holds until released)", v)
	}
	return d, nil
}

func (e *Engine) setHolds(ctx context.Context, actor Actor, detail string, edit func(*store.HoldSettings) string) (Result, error) {
	unlock, err := lockFile(ctx, filepath.Join(e.cfg.StateDir, "lock"))
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	tx, err := e.store.Begin(ctx)
	if err != nil {
		return Result{}, err
	}
	defer tx.Rollback()
	was, err := tx.HoldSettings(ctx)
	if err != nil {
		return Result{}, err
	}
	hs := was
	msg := edit(&hs)
	if hs == was {
		return Result{Message: msg + " (unchanged)"}, nil
	}
	if err := tx.PutHoldSettings(ctx, hs); err != nil {
		return Result{}, err
	}
	if err := tx.AppendAudit(ctx, store.AuditRecord{
		At: e.cfg.Now(), Actor: actor.Name, Source: actor.Source, Remote: actor.Remote,
		Operation: "set", Detail: detail, Outcome: "ok",
	}); err != nil {
		return Result{}, err
	}
	if err := tx.Commit(); err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Message: msg}, nil
}

// HoldSettingsView is the automatic hold's settings as status shows them.
type HoldSettingsView struct {
	After string `json:"hold_after"` // "10/m" or "off"
	For   string `json:"hold_for"`   // "1h" or "until released"
}

// HoldSettings returns the automatic hold's settings.
func (e *Engine) HoldSettings(ctx context.Context) (store.HoldSettings, error) {
	return e.store.HoldSettings(ctx)
}

func holdSettingsView(hs store.HoldSettings) HoldSettingsView {
	v := HoldSettingsView{After: hs.After.String(), For: durationText(hs.For)}
	if hs.For == 0 {
		v.For = "until released"
	}
	return v
}

// untilText says how long a hold lasts: "until released", "until 15:04 UTC".
func untilText(until time.Time) string {
	if until.IsZero() {
		return "until released"
	}
	return "until " + until.UTC().Format("2006-01-02 15:04:05 UTC")
}

// durationText renders d without trailing zero units: "1h", "90m", "1d".
func durationText(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}

func holdJSON(hs ...store.Hold) string {
	out := make([]HeldUser, 0, len(hs))
	for _, h := range hs {
		out = append(out, heldUser(h))
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// releaseRef names a held event's user for "smtpguard release user".
func releaseRef(ev store.Event) string {
	if ev.User != "" {
		return ev.User
	}
	return strconv.FormatUint(uint64(ev.UID), 10)
}
