package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

// identity is who makes a request: nobody, a signed-in account, or an API
// token. The zero value is anonymous.
type identity struct {
	name    string        // account name, or token name for tokens
	token   bool          // authenticated by Authorization: Bearer
	account store.Account // the account's role, privileges and users (role only for unbound admin tokens)
	secret  string        // the session cookie's secret, for sign-out and flash messages
	remote  string
}

func (id *identity) anonymous() bool { return id == nil || id.account.Role == "" }
func (id *identity) bearer() bool    { return id != nil && id.token }

// Signed reports whether anyone is signed in (templates use it).
func (id *identity) Signed() bool { return !id.anonymous() }

// IsAdmin reports whether the requester is an administrator (templates use it).
func (id *identity) IsAdmin() bool { return !id.anonymous() && id.account.Role == store.RoleAdmin }

// CanSMTP reports whether the requester may use the SMTP Restrictions page.
func (id *identity) CanSMTP() bool {
	return !id.anonymous() && id.account.Has(store.PrivSMTPRestrictions)
}

// Name is the account or token name shown in the page header.
func (id *identity) Name() string { return id.name }

// Role is "admin" or "reseller".
func (id *identity) Role() string { return id.account.Role }

// Token reports whether a token, not a browser session, made the request.
func (id *identity) Token() bool { return id.bearer() }

func (id *identity) can(a access) bool {
	switch a {
	case public:
		return true
	case smtpPriv:
		return id.CanSMTP()
	case admin:
		return id.IsAdmin()
	}
	return false
}

// actor is how the audit log names the requester.
func (id *identity) actor() engine.Actor {
	if id.token {
		return engine.Actor{Name: "api:" + id.name, Source: "api", Remote: id.remote}
	}
	return engine.Actor{Name: "web:" + id.name, Source: "web", Remote: id.remote}
}

// signInActor names an anonymous client trying to sign in.
func (id *identity) signInActor() engine.Actor {
	return engine.Actor{Name: "anonymous", Source: "web", Remote: id.remote}
}

func (id *identity) actorName() string {
	if id.anonymous() {
		return "anonymous"
	}
	return id.actor().Name
}

// eventFilter narrows an events query to one user, and a reseller to the
// users they own.
func (id *identity) eventFilter(f store.EventFilter, user string) store.EventFilter {
	switch {
	case !id.IsAdmin():
		f.OnlyUsers, f.Users = true, []string{}
		for _, u := range id.account.Users {
			if user == "" || u == user {
				f.Users = append(f.Users, u)
			}
		}
	case user != "":
		f.OnlyUsers, f.Users = true, []string{user}
	}
	return f
}

// touchEvery limits last-used writes to one per minute per session or token.
const touchEvery = time.Minute

// authenticate finds who makes the request. A bad bearer token is an error
// (401); a bad or expired cookie is just anonymous, and is cleared.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*identity, error) {
	ctx := r.Context()
	now := s.cfg.Now()
	id := &identity{remote: remoteAddr(r)}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, _ := strings.Cut(h, " ")
		secret = strings.TrimSpace(secret)
		if !strings.EqualFold(scheme, "Bearer") || secret == "" {
			return nil, &httpError{code: http.StatusUnauthorized, msg: "the Authorization header must be: Bearer TOKEN"}
		}
		tok, err := s.st.TokenBySecret(ctx, secret)
		if errors.Is(err, store.ErrNotFound) {
			return nil, &httpError{code: http.StatusUnauthorized, msg: "unknown or revoked API token"}
		}
		if err != nil {
			return nil, err
		}
		id.name, id.token = tok.Name, true
		id.account = store.Account{Role: tok.Role}
		if tok.Account != "" {
			if id.account, err = s.st.Account(ctx, tok.Account); err != nil {
				return nil, err
			}
		}
		if tok.LastUsed == nil || now.Sub(*tok.LastUsed) >= touchEvery {
			if err := s.eng.TouchToken(ctx, tok.Name, now); err != nil {
				s.log.Warn("cannot record API token use", "token", tok.Name, "err", err)
			}
		}
		return id, nil
	}
	c, err := r.Cookie(Cookie)
	if err != nil || c.Value == "" {
		return id, nil
	}
	sess, err := s.st.SessionBySecret(ctx, c.Value)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.clearCookie(w)
		return id, nil
	case err != nil:
		return nil, err
	}
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeen) >= s.cfg.IdleTimeout {
		if err := s.eng.EndSession(ctx, c.Value); err != nil {
			return nil, err
		}
		s.clearCookie(w)
		return id, nil
	}
	acct, err := s.st.Account(ctx, sess.Account)
	if err != nil {
		return nil, err
	}
	if now.Sub(sess.LastSeen) >= touchEvery {
		if err := s.eng.TouchSession(ctx, c.Value, now); err != nil {
			s.log.Warn("cannot record session activity", "err", err)
		}
	}
	id.name, id.account, id.secret = acct.Name, acct, c.Value
	return id, nil
}

func (s *Server) setCookie(w http.ResponseWriter, secret string) {
	http.SetCookie(w, &http.Cookie{
		Name:     Cookie,
		Value:    secret,
		Path:     "/",
		MaxAge:   int(s.cfg.SessionTTL / time.Second),
		HttpOnly: true,
		Secure:   s.cfg.Secure,
		SameSite: http.SameSiteStrictMode,
	})
}

func (s *Server) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteStrictMode})
}

type loginData struct {
	Username string
	Next     string // the local page to return to after signing in
}

// loginURL is the sign-in page that returns to the page r asked for.
func loginURL(r *http.Request) string {
	next := safeLocal(r.URL.RequestURI())
	if r.Method != http.MethodGet || next == "/" {
		return "/login"
	}
	return "/login?next=" + url.QueryEscape(next)
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, id *identity) error {
	next := safeLocal(r.URL.Query().Get("next"))
	if !id.anonymous() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return nil
	}
	s.render(w, r, http.StatusOK, "login", &page{Title: "Sign in", Me: id, Data: loginData{Next: next}})
	return nil
}

// errBadCredentials is the one answer to a wrong name or a wrong password.
var errBadCredentials = errors.New("wrong username or password")

func (s *Server) login(w http.ResponseWriter, r *http.Request, id *identity) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return badRequest("cannot read the form: %v", err)
	}
	username := strings.ToLower(strings.TrimSpace(r.PostForm.Get("username")))
	password := r.PostForm.Get("password")
	next := safeLocal(r.PostForm.Get("next"))
	fail := func(code int, msg string) error {
		s.render(w, r, code, "login", &page{Title: "Sign in", Me: &identity{}, Error: msg, Data: loginData{Username: username, Next: next}})
		return nil
	}
	if username == "" || password == "" {
		return fail(http.StatusBadRequest, "Enter your username and password.")
	}
	now := s.cfg.Now()
	remote := remoteAddr(r)
	ctx := r.Context()
	// Counted before the password is checked, atomically in the store: of
	// attempts arriving at once, those beyond the limit are refused here
	// without a check.
	attempt, err := s.eng.BeginSignIn(ctx, s.lockout(), username, remote)
	var refused *engine.SignInRefused
	if errors.As(err, &refused) {
		s.log.Warn("sign-in refused after repeated failures", "user", username, "remote", remote, "locked", refused.Locked)
		w.Header().Set("Retry-After", strconv.Itoa(int((refused.RetryAfter+time.Second-1)/time.Second)))
		msg := fmt.Sprintf("Too many failed sign-ins. Try again in %s.", roundUp(refused.RetryAfter))
		if refused.Locked {
			msg = fmt.Sprintf("Too many failed sign-ins from your address. Try again in %s, or ask an administrator to run 'smtpguard account unlock %s'.", roundUp(refused.RetryAfter), username)
		}
		return fail(http.StatusTooManyRequests, msg)
	}
	if err != nil {
		return err
	}
	acct, err := s.checkPassword(ctx, username, password)
	if errors.Is(err, errBadCredentials) {
		anon := &identity{remote: remote}
		if ferr := s.eng.FailSignIn(ctx, anon.signInActor(), attempt); ferr != nil {
			return ferr
		}
		s.log.Warn("failed sign-in", "user", username, "remote", remote)
		return fail(http.StatusUnauthorized, "Wrong username or password.")
	}
	if err != nil {
		// Not checked (the client went away, the store failed): un-count it.
		if aerr := s.eng.AbandonSignIn(context.WithoutCancel(ctx), attempt); aerr != nil {
			s.log.Warn("cannot release a sign-in attempt", "user", username, "err", aerr)
		}
		return err
	}
	// A fresh secret at every sign-in: a cookie planted before cannot be
	// promoted into a signed-in session.
	if c, err := r.Cookie(Cookie); err == nil && c.Value != "" {
		if err := s.eng.EndSession(ctx, c.Value); err != nil {
			return err
		}
	}
	secret := store.NewSecret("sgs_")
	me := &identity{name: acct.Name, account: acct, secret: secret, remote: remote}
	failed, err := s.eng.SignIn(ctx, me.actor(), attempt, secret, store.Session{
		Account: acct.Name, CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL), LastSeen: now, Remote: remote,
	})
	if err != nil {
		return err
	}
	if failed.Count > 0 {
		// Shown on the first page: the owner is the one to notice guessing.
		s.flash(r, me, flash{Tone: toneWarn, Text: fmt.Sprintf("%d failed sign-in%s to your account since your last successful one, the last at %s from %s. If that was not you, change your password.",
			failed.Count, plural(int64(failed.Count)), failed.LastAt.Local().Format(timeLayout), dash(failed.LastFrom))})
	}
	if _, err := s.eng.PruneSessions(ctx, now, now.Add(-s.cfg.IdleTimeout)); err != nil {
		s.log.Warn("cannot prune expired sessions", "err", err)
	}
	s.setCookie(w, secret)
	s.log.Info("signed in", "user", acct.Name, "role", acct.Role, "remote", remote)
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// lockout is the engine's sign-in lockout with this server's limits.
func (s *Server) lockout() engine.Lockout {
	return engine.Lockout{
		PairFailures: s.cfg.AccountFailures,
		LockFor:      s.cfg.LockoutDuration,
		Window:       s.cfg.LockoutWindow,
		AccountFree:  s.cfg.AccountFailures,
		AddressFree:  s.cfg.AddressFailures,
		MaxDelay:     s.cfg.LockoutMaxDelay,
	}
}

// checkPassword verifies a password, taking the same time whether or not the
// account exists.
func (s *Server) checkPassword(ctx context.Context, username, password string) (store.Account, error) {
	select {
	case s.checks <- struct{}{}:
		defer func() { <-s.checks }()
	case <-ctx.Done():
		return store.Account{}, ctx.Err()
	}
	hash, err := s.st.PasswordHash(ctx, username)
	missing := errors.Is(err, store.ErrNotFound)
	if err != nil && !missing {
		return store.Account{}, err
	}
	if missing {
		hash = s.dummyHash
	}
	ok, err := s.verify(hash, password)
	if err != nil {
		return store.Account{}, fmt.Errorf("account %q: %w", username, err)
	}
	if !ok || missing {
		return store.Account{}, errBadCredentials
	}
	return s.st.Account(ctx, username)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, id *identity) error {
	if id.secret != "" {
		if err := s.eng.EndSession(r.Context(), id.secret); err != nil {
			return err
		}
		s.log.Info("signed out", "user", id.name, "remote", id.remote)
	}
	s.clearCookie(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

func roundUp(d time.Duration) string {
	m := int((d + time.Minute - 1) / time.Minute)
	if m <= 1 {
		return "1 minute"
	}
	return fmt.Sprintf("%d minutes", m)
}

func dash(s string) string {
	if s == "" {
		return "an unknown address"
	}
	return s
}
