package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// parseForm reads a small form body.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		return badRequest("cannot read the form: %v", err)
	}
	return nil
}

// done leaves a message for the next page and sends the browser there
// (post/redirect/get, so reloading does not repeat the change).
func (s *Server) done(w http.ResponseWriter, r *http.Request, id *identity, to, msg string) error {
	return s.doneWith(w, r, id, to, flash{Tone: toneOK, Text: msg})
}

// doneWith is done with a message of any tone.
func (s *Server) doneWith(w http.ResponseWriter, r *http.Request, id *identity, to string, f flash) error {
	s.flash(r, id, f)
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// doneResult is done with an engine result: a change that changed nothing
// ("already allowed") is said plainly, not shown as a success.
func (s *Server) doneResult(w http.ResponseWriter, r *http.Request, id *identity, to string, res engine.Result) error {
	return s.doneWith(w, r, id, to, flash{Tone: toneOf(res.Changed), Text: res.Message})
}

// userError splits errors caused by the input (shown on the page, 400)
// from failures of the system (500 page).
func userError(err error) (string, bool) {
	code, msg := classify(err)
	if code >= 400 && code < 500 {
		return msg, true
	}
	return "", false
}

// statusView is the SMTP Restrictions page.
type statusView struct {
	resellerStatus
	Full *engine.Status // administrators only
	// On a server with thousands of allowed users the page shows the first
	// listShown of each list and counts the rest, unless ?all=1.
	MoreUIDs, MoreUsers, MoreGroups int
	Card                            cardState
	Daemon                          *DaemonState       // nil: not served by the daemon (tests)
	Holds                           *heldBlock         // administrators only (holds.go)
	LastRepair                      *store.AuditRecord // the newest repair in the audit log
}

// listShown bounds the long lists of the status page.
const listShown = 50

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request, id *identity) error {
	return s.renderStatus(w, r, id, http.StatusOK, "")
}

func (s *Server) renderStatus(w http.ResponseWriter, r *http.Request, id *identity, code int, errMsg string) error {
	st, err := s.eng.Status(r.Context())
	if err != nil {
		return err
	}
	v := statusView{resellerStatus: resellerView(st, id), Card: stateOf(st.Enabled, st.Mode, st.Kernel)}
	if s.cfg.Daemon != nil {
		d := s.cfg.Daemon()
		v.Daemon = &d
	}
	if id.IsAdmin() {
		// Bounded to the retention of a month: the audit log may be long.
		rec, ok, err := s.eng.LastRepair(r.Context(), s.cfg.Now().Add(-30*24*time.Hour))
		if err != nil {
			return err
		}
		if ok {
			v.LastRepair = &rec
		}
		if r.URL.Query().Get("all") == "" {
			st.AllowedUIDs, v.MoreUIDs = firstOf(st.AllowedUIDs, listShown)
			st.AllowedUsers, v.MoreUsers = firstOf(st.AllowedUsers, listShown)
			st.AllowedGroups, v.MoreGroups = firstOf(st.AllowedGroups, listShown)
		}
		v.Full = &st
		v.Holds = heldFor(st.Held, "/")
	}
	s.render(w, r, code, "status", &page{Title: "SMTP Restrictions", Nav: "status", Me: id, Flash: s.takeFlash(r, id), Error: errMsg, Data: v})
	return nil
}

// firstOf returns the first n of list and how many were left out.
func firstOf[T any](list []T, n int) ([]T, int) {
	if len(list) <= n {
		return list, 0
	}
	return list[:n], len(list) - n
}

func (s *Server) enableUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	before, err := s.eng.Status(r.Context())
	if err != nil {
		return err
	}
	res, err := s.enable(r.Context(), id)
	if err == nil && !res.Changed && before.Enabled && before.Kernel.State != "in sync" {
		// "Apply again" on a drifted kernel: the policy did not change, but
		// the kernel did, and that is what was asked for.
		if after, serr := s.eng.Status(r.Context()); serr == nil && after.Kernel.State == "in sync" {
			return s.doneWith(w, r, id, "/", flash{Tone: toneOK, Text: "the kernel's rules were applied again and match the stored policy"})
		}
	}
	return s.afterStatusChange(w, r, id, res, err)
}

func (s *Server) disableUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	if !confirmed(r) {
		effect := "Every user of this server will be able to connect to remote SMTP servers directly, bypassing the mail server, until the restriction is enabled again."
		if !id.IsAdmin() {
			effect += " This affects every user on the server, not only yours."
		}
		return s.askFirst(w, r, id, "Disable the SMTP restriction", confirmation{
			Question: "Disable the SMTP restriction on " + s.hostOr("this server") + "?", Effect: effect,
			Button: "Disable for every user", Cancel: "/", Danger: true})
	}
	res, err := s.eng.Disable(r.Context(), id.actor())
	return s.afterStatusChange(w, r, id, res, err)
}

func (s *Server) afterStatusChange(w http.ResponseWriter, r *http.Request, id *identity, res engine.Result, err error) error {
	if err != nil {
		code, msg := classify(err)
		if code >= 500 {
			s.log.Error("cannot change the SMTP restriction", "who", id.actorName(), "err", err)
		}
		return s.renderStatus(w, r, id, code, msg)
	}
	return s.doneResult(w, r, id, "/", res)
}

// allowedView is the allowed users and groups page.
type allowedView struct {
	Users  []string
	Groups []string
	// UserRates and GroupRates are own rate limits by name; RateLimit is
	// the default ("off": none).
	UserRates, GroupRates map[string]string
	RateLimit             string
	Exceptions            []engine.ExceptionStatus
	Form                  allowForm
	// Filter (?q=) narrows the lists to names containing it; beyond
	// listShown entries the rest are counted, not listed.
	Filter                string
	MoreUsers, MoreGroups int
	Holds                 *heldBlock // holds.go
	HoldForm              holdForm   // holds.go
	HoldFor               string     // the hold-for setting: "1h", "0"
}

type allowForm struct {
	Kind, Name, To, Ports, Rate string
}

func (s *Server) allowedPage(w http.ResponseWriter, r *http.Request, id *identity) error {
	return s.renderAllowed(w, r, id, http.StatusOK, "", allowForm{Kind: "user"})
}

func (s *Server) renderAllowed(w http.ResponseWriter, r *http.Request, id *identity, code int, errMsg string, f allowForm) error {
	return s.renderAllowedWith(w, r, id, code, errMsg, f, holdForm{})
}

func (s *Server) renderAllowedWith(w http.ResponseWriter, r *http.Request, id *identity, code int, errMsg string, f allowForm, hf holdForm) error {
	st, err := s.eng.Status(r.Context())
	if err != nil {
		return err
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	match := func(list []string) []string {
		if q == "" {
			return list
		}
		var out []string
		for _, name := range list {
			if strings.Contains(name, q) {
				out = append(out, name)
			}
		}
		return out
	}
	v := allowedView{Exceptions: st.Exceptions, Form: f, Filter: q, UserRates: st.UserRates, GroupRates: st.GroupRates, RateLimit: st.RateLimit,
		Holds: heldFor(st.Held, "/allowed"), HoldForm: hf}
	if hs, err := s.eng.HoldSettings(r.Context()); err == nil {
		v.HoldFor = engine.HoldForValue(hs.For)
	}
	v.Users, v.MoreUsers = firstOf(match(st.AllowedUsers), listShown)
	v.Groups, v.MoreGroups = firstOf(match(st.AllowedGroups), listShown)
	s.render(w, r, code, "allowed", &page{Title: "Allowed users and groups", Nav: "allowed", Me: id, Flash: s.takeFlash(r, id), Error: errMsg, Data: v})
	return nil
}

func (s *Server) allowUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	return s.allowRevokeUI(w, r, id, true)
}

func (s *Server) revokeUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	return s.allowRevokeUI(w, r, id, false)
}

func (s *Server) allowRevokeUI(w http.ResponseWriter, r *http.Request, id *identity, allow bool) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	f := allowForm{Kind: r.PostForm.Get("kind"), Name: r.PostForm.Get("name"), To: r.PostForm.Get("to"), Ports: r.PostForm.Get("ports"), Rate: strings.TrimSpace(r.PostForm.Get("rate"))}
	back := "/allowed"
	if b := r.PostForm.Get("back"); allow {
		if events, ok := backToEvents(b); ok {
			back = events // "Allow this destination" returns to the same filtered view
		}
	} else if b != "" {
		back = safeLocal(b)
	}
	if !allow && !confirmed(r) {
		return s.askFirst(w, r, id, "Remove an allowed entry", removeConfirmation(f, back))
	}
	var rate *string
	if allow && f.Rate != "" {
		rate = &f.Rate // an empty field keeps the rate as it is
	}
	res, err := s.allow(r.Context(), id, allow, f.Kind, f.Name, f.To, f.Ports, rate)
	if err != nil {
		msg, ok := userError(err)
		if !ok {
			return err
		}
		if !allow {
			f = allowForm{Kind: "user"}
		}
		return s.renderAllowed(w, r, id, http.StatusBadRequest, msg, f)
	}
	fl := flash{Tone: toneOf(res.Changed), Text: res.Message}
	if allow && f.To != "" && res.Changed {
		if w := s.unresolvedWarning(r.Context(), f.To); w != "" {
			fl = flash{Tone: toneWarn, Text: stripDNSNote(res.Message, f.To) + ". " + w}
		}
	}
	return s.doneWith(w, r, id, back, fl)
}

// settingsView is the ports, mode and local-addresses page.
type settingsView struct {
	Ports      string
	Mode       string
	AllowLocal bool
	Modes      []modeChoice
	// RateLimit, HoldAfter and HoldFor are as the CLI takes them: "100/h"
	// or "off", "10/m" or "off", "1h" or "0".
	RateLimit, HoldAfter, HoldFor string
}

type modeChoice struct {
	Value, Label, Help string
}

func modeChoices() []modeChoice {
	return []modeChoice{
		{string(policy.ModeReject), "Reject", "Refuse the connection at once (connection refused). Recommended."},
		{string(policy.ModeRedirect), "Redirect to the local MTA", "Send the connection to the same port on this server, where the MTA applies its own rules."},
		{string(policy.ModeExplain), "Refuse with an explanation", "Answer the script with an SMTP error (554 5.7.1) naming the user, the destination, how to send instead and a reference to look up under Blocked attempts. Port 465 (TLS) is refused as in Reject; while the daemon is stopped, everything is."},
		{string(policy.ModeLog), "Log only", "Let the connection through and record it: to see who would be blocked before enforcing."},
	}
}

func (s *Server) settingsPage(w http.ResponseWriter, r *http.Request, id *identity) error {
	cur, err := s.currentSettings(r.Context())
	if err != nil {
		return err
	}
	v := settingsView{Ports: policy.PortsString(cur.Ports), Mode: cur.Mode, AllowLocal: cur.AllowLocal, Modes: modeChoices(),
		RateLimit: cur.RateLimit, HoldAfter: cur.HoldAfter, HoldFor: cur.HoldFor}
	s.render(w, r, http.StatusOK, "settings", &page{Title: "Ports, mode and limits", Nav: "settings", Me: id, Flash: s.takeFlash(r, id), Data: v})
	return nil
}

func (s *Server) saveSettingsUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	cur, err := s.currentSettings(r.Context())
	if err != nil {
		return err
	}
	ports, mode := r.PostForm.Get("ports"), r.PostForm.Get("mode")
	local := "off"
	if r.PostForm.Get("allow_local") != "" {
		local = "on"
	}
	if mode == string(policy.ModeLog) && !confirmed(r) && cur.Mode != mode {
		return s.askFirst(w, r, id, "Switch to log only", confirmation{
			Question: "Switch the mode to log only?",
			Effect:   "Nothing will be blocked any more: every user's connections to remote SMTP servers are let through and only recorded, until the mode is set back to Reject or Redirect.",
			Button:   "Switch to log only", Cancel: "/settings", Danger: true})
	}
	ch := settingsChange{ports: &ports, mode: &mode, allowLocal: &local}
	// A form without the limit and hold fields (an older page) keeps them.
	rate, holdAfter, holdFor := cur.RateLimit, cur.HoldAfter, cur.HoldFor
	if r.PostForm.Has("rate_limit") {
		rate = r.PostForm.Get("rate_limit")
		ch.rateLimit = &rate
	}
	if r.PostForm.Has("hold_after") {
		holdAfter = r.PostForm.Get("hold_after")
		ch.holdAfter = &holdAfter
	}
	if r.PostForm.Has("hold_for") {
		holdFor = r.PostForm.Get("hold_for")
		ch.holdFor = &holdFor
	}
	msgs, changed, err := s.applySettings(r.Context(), id, ch)
	if err != nil {
		msg, ok := userError(err)
		if !ok {
			return err
		}
		v := settingsView{Ports: ports, Mode: mode, AllowLocal: local == "on", Modes: modeChoices(),
			RateLimit: rate, HoldAfter: holdAfter, HoldFor: holdFor}
		s.render(w, r, http.StatusBadRequest, "settings", &page{Title: "Ports, mode and limits", Nav: "settings", Me: id, Error: msg, Data: v})
		return nil
	}
	return s.doneWith(w, r, id, "/settings", flash{Tone: toneOf(changed), Text: strings.Join(msgs, "; ")})
}

// accountsView is the accounts, privileges and tokens page.
type accountsView struct {
	Accounts   []store.Account
	Tokens     []store.Token
	Lockouts   []store.SignInCounter // sign-in lockouts and slow-downs in force
	Privilege  string
	NewToken   string // shown once, right after creation
	NewTokenOf string
	Form       accountForm
	TokenForm  tokenForm
}

type accountForm struct{ Name, Role string }
type tokenForm struct{ Name, Role, Account string }

func (s *Server) accountsPage(w http.ResponseWriter, r *http.Request, id *identity) error {
	return s.renderAccounts(w, r, id, http.StatusOK, "", accountsView{})
}

func (s *Server) renderAccounts(w http.ResponseWriter, r *http.Request, id *identity, code int, errMsg string, v accountsView) error {
	var err error
	if v.Accounts, err = s.st.Accounts(r.Context()); err != nil {
		return err
	}
	if v.Tokens, err = s.st.Tokens(r.Context()); err != nil {
		return err
	}
	if v.Lockouts, err = s.st.SignInLocks(r.Context(), s.cfg.Now()); err != nil {
		return err
	}
	v.Privilege = store.PrivSMTPRestrictions
	if v.Form.Role == "" {
		v.Form.Role = store.RoleReseller
	}
	if v.TokenForm.Role == "" {
		v.TokenForm.Role = store.RoleAdmin
	}
	s.render(w, r, code, "accounts", &page{Title: "Accounts and privileges", Nav: "accounts", Me: id, Flash: s.takeFlash(r, id), Error: errMsg, Data: v})
	return nil
}

// accountsFailed shows an input error on the accounts page.
func (s *Server) accountsFailed(w http.ResponseWriter, r *http.Request, id *identity, err error, v accountsView) error {
	msg, ok := userError(err)
	if !ok {
		return err
	}
	code, _ := classify(err)
	return s.renderAccounts(w, r, id, code, msg, v)
}

// withChecks runs an argon2 computation (hashing a new password) within the
// bound on concurrent ones.
func (s *Server) withChecks(ctx context.Context, fn func() (engine.Result, error)) (engine.Result, error) {
	select {
	case s.checks <- struct{}{}:
		defer func() { <-s.checks }()
	case <-ctx.Done():
		return engine.Result{}, ctx.Err()
	}
	return fn()
}

// newPassword reads the form's two password fields.
func newPassword(r *http.Request) (string, error) {
	pw, again := r.PostForm.Get("password"), r.PostForm.Get("password2")
	if err := engine.ValidatePassword(pw); err != nil {
		return "", err
	}
	if pw != again {
		return "", badRequest("the two passwords differ")
	}
	return pw, nil
}

func (s *Server) addAccountUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	f := accountForm{Name: strings.TrimSpace(r.PostForm.Get("name")), Role: r.PostForm.Get("role")}
	v := accountsView{Form: f}
	if err := engine.ValidateAccount(f.Name, f.Role); err != nil {
		return s.accountsFailed(w, r, id, err, v)
	}
	pw, err := newPassword(r)
	if err != nil {
		return s.accountsFailed(w, r, id, err, v)
	}
	res, err := s.withChecks(r.Context(), func() (engine.Result, error) {
		return s.eng.AddAccount(r.Context(), id.actor(), f.Name, f.Role, pw)
	})
	if err != nil {
		return s.accountsFailed(w, r, id, err, v)
	}
	msg := res.Message
	if f.Role == store.RoleReseller {
		msg += fmt.Sprintf(": grant it %s and give it its users below", store.PrivSMTPRestrictions)
	}
	return s.done(w, r, id, "/accounts", msg)
}

func (s *Server) deleteAccountUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	name := r.PathValue("name")
	if !id.token && name == id.name {
		return s.accountsFailed(w, r, id, badRequest("you cannot delete the account you are signed in with"), accountsView{})
	}
	if !confirmed(r) {
		return s.askFirst(w, r, id, "Delete an account", confirmation{
			Question: "Delete the account " + name + "?",
			Effect:   "Its sessions end at once, its API tokens stop working, and it can no longer sign in. The audit log keeps its past changes.",
			Button:   "Delete " + name, Cancel: "/accounts", Danger: true})
	}
	res, err := s.eng.DeleteAccount(r.Context(), id.actor(), name)
	if err != nil {
		return s.accountsFailed(w, r, id, err, accountsView{})
	}
	return s.doneResult(w, r, id, "/accounts", res)
}

func (s *Server) passwordUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	name := r.PathValue("name")
	if _, err := s.st.Account(r.Context(), name); err != nil {
		return s.accountsFailed(w, r, id, err, accountsView{})
	}
	pw, err := newPassword(r)
	if err != nil {
		return s.accountsFailed(w, r, id, err, accountsView{})
	}
	res, err := s.withChecks(r.Context(), func() (engine.Result, error) {
		return s.eng.SetPassword(r.Context(), id.actor(), name, pw)
	})
	if err != nil {
		return s.accountsFailed(w, r, id, err, accountsView{})
	}
	if !id.token && name == id.name {
		// Our own session went with the others.
		s.clearCookie(w)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return nil
	}
	return s.doneResult(w, r, id, "/accounts", res)
}

func (s *Server) grantUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	return s.privilegeUI(w, r, id, true)
}

func (s *Server) revokePrivUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	return s.privilegeUI(w, r, id, false)
}

func (s *Server) privilegeUI(w http.ResponseWriter, r *http.Request, id *identity, grant bool) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	name, priv := r.PathValue("name"), r.PostForm.Get("privilege")
	if priv == "" {
		priv = store.PrivSMTPRestrictions
	}
	op := s.eng.Grant
	if !grant {
		op = s.eng.RevokePrivilege
	}
	res, err := op(r.Context(), id.actor(), name, priv)
	if err != nil {
		return s.accountsFailed(w, r, id, err, accountsView{})
	}
	return s.doneResult(w, r, id, "/accounts", res)
}

// splitList reads "alice, bob carol" as a list.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

func (s *Server) ownUsersUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	res, err := s.eng.SetOwned(r.Context(), id.actor(), r.PathValue("name"), splitList(r.PostForm.Get("users")))
	if err != nil {
		return s.accountsFailed(w, r, id, err, accountsView{})
	}
	return s.doneResult(w, r, id, "/accounts", res)
}

func (s *Server) createTokenUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	f := tokenForm{Name: strings.TrimSpace(r.PostForm.Get("name")), Role: r.PostForm.Get("role"), Account: strings.TrimSpace(r.PostForm.Get("account"))}
	secret, _, err := s.eng.CreateToken(r.Context(), id.actor(), f.Name, f.Role, f.Account)
	if err != nil {
		return s.accountsFailed(w, r, id, err, accountsView{TokenForm: f})
	}
	// Shown once, in this answer: never stored, never put in a flash message.
	return s.renderAccounts(w, r, id, http.StatusOK, "", accountsView{NewToken: secret, NewTokenOf: f.Name})
}

func (s *Server) revokeTokenUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	name := r.PathValue("name")
	if !confirmed(r) {
		return s.askFirst(w, r, id, "Revoke an API token", confirmation{
			Question: "Revoke the API token " + name + "?",
			Effect:   "Every script or system using it is refused from now on. A revoked token cannot be restored: you would create a new one.",
			Button:   "Revoke " + name, Cancel: "/accounts", Danger: true})
	}
	res, err := s.eng.RevokeToken(r.Context(), id.actor(), name)
	if err != nil {
		return s.accountsFailed(w, r, id, err, accountsView{})
	}
	return s.doneResult(w, r, id, "/accounts", res)
}
