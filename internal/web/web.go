// Package web is smtpguard's web UI and JSON API, served by "smtpguard serve".
//
// Every route is declared once, in routes(), with the access it requires, so
// the authorization matrix test can walk them all. Requests authenticate
// with a session cookie (browsers, after POST /login) or an API token
// (Authorization: Bearer). State-changing requests that carry a cookie must
// come from our own origin (http.CrossOriginProtection); bearer requests
// cannot be forged by another site and need no such check. Every policy change
// goes through the engine, so the audit log names the account ("web:NAME") or
// token ("api:NAME") that made it.
package web

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/store"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Cookie is the session cookie's name.
const Cookie = "smtpguard_session"

// Config configures the web handler. Zero values take the defaults.
type Config struct {
	Engine *engine.Engine
	Logger *slog.Logger
	// Secure marks the session cookie Secure; set it when serving over TLS.
	Secure bool
	// Backend is what Enable from the web or API uses. "" means the backend
	// of the stored policy: the one the restriction was last enabled with,
	// "auto" on a fresh install.
	Backend string
	Now     func() time.Time
	// Hostname is shown in every page's header, so nobody mistakes which
	// server they are changing.
	Hostname string

	SessionTTL  time.Duration // absolute session lifetime (12h)
	IdleTimeout time.Duration // a session unused this long ends (1h)

	// Sign-in lockout (engine.Lockout): an account is locked for
	// LockoutDuration from a client address that failed AccountFailures
	// times within LockoutWindow; past AccountFailures failures from anywhere
	// (or AddressFailures from one address, for any account) sign-ins are
	// slowed down, never locked: a wait that doubles from 1s up to
	// LockoutMaxDelay between checked attempts.
	AccountFailures int           // 5
	AddressFailures int           // 20
	LockoutWindow   time.Duration // 15m
	LockoutDuration time.Duration // 15m
	LockoutMaxDelay time.Duration // 1m

	// MTA says which MTA configuration to manage (as the mta command's
	// --exim-config and --postfix-config-dir).
	MTA mta.Options

	// Daemon, when set, reports the state of the daemon serving the pages
	// (recording blocked attempts, drift repairs) for the status page.
	Daemon func() DaemonState

	// MaxPasswordChecks bounds concurrent password hashes and verifications,
	// each of which holds the engine's argon2 memory (2).
	MaxPasswordChecks int
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.SessionTTL, 12*time.Hour)
	def(&c.IdleTimeout, time.Hour)
	def(&c.LockoutWindow, 15*time.Minute)
	def(&c.LockoutDuration, 15*time.Minute)
	if c.AccountFailures <= 0 {
		c.AccountFailures = 5
	}
	if c.AddressFailures <= 0 {
		c.AddressFailures = 20
	}
	def(&c.LockoutMaxDelay, time.Minute)
	if c.MaxPasswordChecks <= 0 {
		c.MaxPasswordChecks = 2
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server is the web UI and API handler.
type Server struct {
	cfg    Config
	eng    *engine.Engine
	st     store.View
	log    *slog.Logger
	mux    *http.ServeMux
	routes []route
	views  map[string]*template.Template
	static http.Handler
	csrf   *http.CrossOriginProtection

	checks chan struct{} // bounds concurrent argon2 computations
	// verify checks a password against its hash (store.VerifyPassword);
	// tests count the checks through it.
	verify func(encoded, password string) (bool, error)
	host   string // this server's name, shown in the header
	// dummyHash is verified against when the account does not exist, so a
	// sign-in takes as long for a wrong name as for a wrong password.
	dummyHash string
}

// New builds the handler.
func New(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("web needs an engine")
	}
	cfg.defaults()
	views, err := parseViews()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, err
	}
	dummy := store.UnmatchableHash(cfg.Engine.PasswordCost())
	s := &Server{
		cfg:       cfg,
		eng:       cfg.Engine,
		st:        cfg.Engine.Store(),
		log:       cfg.Logger.With("component", "web"),
		mux:       http.NewServeMux(),
		views:     views,
		static:    http.StripPrefix("/static/", http.FileServerFS(static)),
		csrf:      http.NewCrossOriginProtection(),
		checks:    make(chan struct{}, cfg.MaxPasswordChecks),
		verify:    store.VerifyPassword,
		dummyHash: dummy,
		host:      cfg.Hostname,
	}
	s.routes = s.routeTable()
	for _, rt := range s.routes {
		s.mux.Handle(rt.pattern, s.guard(rt))
	}
	return s, nil
}

// access is what a route requires of the requester.
type access int

const (
	public   access = iota // anyone, signed in or not
	smtpPriv               // an admin, or a reseller granted smtp-restrictions
	admin                  // an admin account or admin token
)

func (a access) String() string {
	return [...]string{"public", "smtp-restrictions", "admin"}[a]
}

// route is one endpoint: its ServeMux pattern, who may use it, and whether it
// answers in JSON (API) or HTML (UI).
type route struct {
	pattern string
	access  access
	api     bool
	handle  func(w http.ResponseWriter, r *http.Request, id *identity) error
}

// routeTable declares every endpoint. A route added here without a row in the
// authorization matrix test fails that test.
func (s *Server) routeTable() []route {
	ui := func(pattern string, a access, h func(http.ResponseWriter, *http.Request, *identity) error) route {
		return route{pattern: pattern, access: a, handle: h}
	}
	api := func(pattern string, a access, h func(http.ResponseWriter, *http.Request, *identity) error) route {
		return route{pattern: pattern, access: a, api: true, handle: h}
	}
	return []route{
		ui("GET /login", public, s.loginPage),
		ui("POST /login", public, s.login),
		ui("POST /logout", public, s.logout),
		ui("GET /static/", public, s.serveStatic),

		ui("GET /{$}", smtpPriv, s.statusPage),
		ui("POST /enable", smtpPriv, s.enableUI),
		ui("POST /disable", smtpPriv, s.disableUI),
		ui("GET /events", smtpPriv, s.eventsPage),

		ui("GET /allowed", admin, s.allowedPage),
		ui("POST /allowed", admin, s.allowUI),
		ui("POST /allowed/remove", admin, s.revokeUI),
		ui("POST /holds/release", admin, s.releaseUI),
		ui("POST /holds", admin, s.holdUI),
		ui("GET /settings", admin, s.settingsPage),
		ui("POST /settings", admin, s.saveSettingsUI),
		ui("GET /audit", admin, s.auditPage),
		ui("GET /mta", admin, s.mtaPage),
		ui("POST /mta", admin, s.setMTAUI),
		ui("GET /accounts", admin, s.accountsPage),
		ui("POST /accounts", admin, s.addAccountUI),
		ui("POST /accounts/{name}/delete", admin, s.deleteAccountUI),
		ui("POST /accounts/{name}/password", admin, s.passwordUI),
		ui("POST /accounts/{name}/grant", admin, s.grantUI),
		ui("POST /accounts/{name}/revoke", admin, s.revokePrivUI),
		ui("POST /accounts/{name}/users", admin, s.ownUsersUI),
		ui("POST /tokens", admin, s.createTokenUI),
		ui("POST /tokens/{name}/revoke", admin, s.revokeTokenUI),

		api("GET /api/v1/status", smtpPriv, s.apiStatus),
		api("POST /api/v1/enable", smtpPriv, s.apiEnable),
		api("POST /api/v1/disable", smtpPriv, s.apiDisable),
		api("GET /api/v1/events", smtpPriv, s.apiEvents),
		api("GET /api/v1/events/export", smtpPriv, s.apiEventsExport),
		api("GET /api/v1/allowed", admin, s.apiAllowed),
		api("POST /api/v1/allowed", admin, s.apiAllow),
		api("DELETE /api/v1/allowed", admin, s.apiRevoke),
		api("GET /api/v1/holds", admin, s.apiHolds),
		api("POST /api/v1/holds", admin, s.apiHold),
		api("DELETE /api/v1/holds", admin, s.apiRelease),
		api("GET /api/v1/settings", admin, s.apiSettings),
		api("PUT /api/v1/settings", admin, s.apiPutSettings),
		api("GET /api/v1/audit", admin, s.apiAudit),
		api("GET /api/v1/mta", admin, s.apiMTA),
		api("PUT /api/v1/mta", admin, s.apiPutMTA),
	}
}

// ServeHTTP sets the security headers every answer carries, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No scripts at all; styles and images from us only; forms post to us only.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	if s.cfg.Secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.unrouted(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// guard authenticates, checks the origin of state changes and the route's
// access rule, then runs the handler and turns its error into an answer.
func (s *Server) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.pattern != "GET /static/" {
			w.Header().Set("Cache-Control", "no-store")
		}
		id, err := s.authenticate(w, r)
		if err != nil {
			s.fail(w, r, rt, nil, err)
			return
		}
		// A bearer token is never sent by a browser on its own, so another
		// site cannot make one ride along: only cookie (and anonymous)
		// requests need the origin check.
		if !id.bearer() {
			if err := s.csrf.Check(r); err != nil {
				s.fail(w, r, rt, id, &httpError{code: http.StatusForbidden, msg: "cross-origin request refused: use the smtpguard page itself"})
				return
			}
		}
		if !id.can(rt.access) {
			if id.anonymous() {
				if rt.api {
					w.Header().Set("WWW-Authenticate", `Bearer realm="smtpguard"`)
					s.fail(w, r, rt, id, &httpError{code: http.StatusUnauthorized, msg: "authentication required: sign in or send Authorization: Bearer TOKEN"})
					return
				}
				http.Redirect(w, r, loginURL(r), http.StatusSeeOther)
				return
			}
			s.fail(w, r, rt, id, forbidden(id, rt.access))
			return
		}
		if err := rt.handle(w, r, id); err != nil {
			s.fail(w, r, rt, id, err)
		}
	})
}

func forbidden(id *identity, a access) *httpError {
	msg := "only administrators may do this"
	if a == smtpPriv {
		msg = fmt.Sprintf("account %q does not have the %s privilege: ask the server administrator to grant it", id.name, store.PrivSMTPRestrictions)
	}
	return &httpError{code: http.StatusForbidden, msg: msg}
}

// httpError is an answer other than success, with a message for people.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// classify turns an error into a status code and a message.
func classify(err error) (int, string) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.code, he.msg
	case engine.IsValidation(err):
		return http.StatusBadRequest, validationMessage(err)
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, err.Error()
	}
	return http.StatusInternalServerError, err.Error()
}

// validationMessage drops the engine's "invalid input: " prefix.
func validationMessage(err error) string {
	msg := err.Error()
	prefix := engine.ErrValidation.Error() + ": "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}

// fail answers with an error: JSON for the API, a page for the UI.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, rt route, id *identity, err error) {
	code, msg := classify(err)
	if code >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "who", id.actorName(), "err", err)
	}
	if rt.api {
		writeJSON(w, code, map[string]string{"error": msg})
		return
	}
	s.render(w, r, code, "error", &page{Title: errorTitle(code), Me: id, Data: errorData{Code: code, Message: msg}})
}

func errorTitle(code int) string {
	switch code {
	case http.StatusUnauthorized:
		return "Sign-in required"
	case http.StatusForbidden:
		return "Access refused"
	case http.StatusNotFound:
		return "Not found"
	case http.StatusBadRequest:
		return "Cannot do that"
	}
	if code >= 500 {
		return "Something went wrong"
	}
	return http.StatusText(code)
}

type errorData struct {
	Code    int
	Message string
}

func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request, _ *identity) error {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	s.static.ServeHTTP(w, r)
	return nil
}

// remoteAddr is the client's address, without the port, for the audit log
// and the lockout.
func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
