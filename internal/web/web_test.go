package web

import (
	"context"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

func TestEveryTemplateIsReferenced(t *testing.T) {
	entries, err := fs.ReadDir(templateFiles, "templates")
	if err != nil {
		t.Fatal(err)
	}
	views := viewNames()
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
		name := strings.TrimSuffix(e.Name(), ".html")
		if e.Name() != layoutFile && !slices.Contains(views, name) {
			t.Errorf("templates/%s is referenced by no view: add it to viewNames() or delete it", e.Name())
		}
	}
	for _, v := range views {
		if !slices.Contains(files, v+".html") {
			t.Errorf("view %q has no templates/%s.html", v, v)
		}
	}
	// Every view is rendered by some handler: the names passed to render.
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	rendered := map[string]bool{}
	for _, p := range []struct{ path, view string }{
		{"/", "status"}, {"/allowed", "allowed"}, {"/settings", "settings"}, {"/events", "events"},
		{"/audit", "audit"}, {"/accounts", "accounts"}, {"/mta", "mta"},
	} {
		w := e.do(req{method: "GET", path: p.path, cookie: admin})
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "</html>") {
			t.Errorf("GET %s = %d, want a whole page", p.path, w.Code)
		}
		rendered[p.view] = true
	}
	if w := e.do(req{method: "GET", path: "/login"}); w.Code == http.StatusOK {
		rendered["login"] = true
	}
	if w := e.do(req{method: "POST", path: "/disable", cookie: admin, form: url.Values{}}); w.Code == http.StatusOK && strings.Contains(w.Body.String(), `id="confirm"`) {
		rendered["confirm"] = true
	}
	if w := e.do(req{method: "GET", path: "/", cookie: e.login("res-no", resellerPassword)}); w.Code == http.StatusForbidden && strings.Contains(w.Body.String(), "refusal") {
		rendered["error"] = true
	}
	for _, v := range views {
		if !rendered[v] {
			t.Errorf("view %q was not rendered by any page", v)
		}
	}
}

func TestRenderErrorIsA500NotAPanic(t *testing.T) {
	e := newTestEnv(t)
	e.srv.views["status"] = template.Must(template.New(layoutFile).Parse(`<p>partial {{template "missing" .}}</p>`))
	w := e.do(req{method: "GET", path: "/", cookie: e.login("admin", adminPassword)})
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "partial") {
		t.Errorf("broken template: %d %q, want 500 and no half page", w.Code, w.Body.String())
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newTestEnv(t)
	for _, r := range []req{
		{method: "GET", path: "/login"},
		{method: "GET", path: "/api/v1/status"},
		{method: "GET", path: "/nope"},
		{method: "GET", path: "/", cookie: e.login("admin", adminPassword)},
	} {
		w := e.do(r)
		h := w.Header()
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: Content-Security-Policy %q lacks %q", r.path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") || strings.Contains(csp, "script-src") {
			t.Errorf("%s: Content-Security-Policy %q allows scripts", r.path, csp)
		}
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", r.path, k, h.Get(k), v)
			}
		}
		if h.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS sent without TLS", r.path)
		}
	}
	secure := newTestEnv(t, func(c *Config) { c.Secure = true })
	if w := secure.do(req{method: "GET", path: "/login"}); w.Header().Get("Strict-Transport-Security") == "" {
		t.Error("no Strict-Transport-Security under TLS")
	}
}

func TestSessionCookie(t *testing.T) {
	for _, secure := range []bool{false, true} {
		e := newTestEnv(t, func(c *Config) { c.Secure = secure })
		w := e.do(req{method: "POST", path: "/login", form: url.Values{"username": {"admin"}, "password": {adminPassword}}})
		var c *http.Cookie
		for _, k := range w.Result().Cookies() {
			if k.Name == "smtpguard_session" {
				c = k
			}
		}
		if c == nil {
			t.Fatalf("no smtpguard_session cookie: %v", w.Header())
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != secure || c.Path != "/" {
			t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Secure=%t, Path=/", c, secure)
		}
		if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || loc != "/" {
			t.Errorf("POST /login = %d to %q, want 303 to /", w.Code, loc)
		}
	}
}

func TestSessionLifecycle(t *testing.T) {
	e := newTestEnv(t)
	s := e.login("admin", adminPassword)
	page := func(cookie string) int { return e.do(req{method: "GET", path: "/", cookie: cookie}).Code }
	if got := page(s); got != http.StatusOK {
		t.Fatalf("signed in: GET / = %d, want 200", got)
	}
	// Idle timeout (1h): activity within it keeps the session going.
	e.clock.Advance(50 * time.Minute)
	if got := page(s); got != http.StatusOK {
		t.Errorf("after 50 idle minutes: %d, want 200", got)
	}
	e.clock.Advance(61 * time.Minute)
	if got := page(s); got != http.StatusSeeOther {
		t.Errorf("after 61 idle minutes: %d, want 303 to /login", got)
	}
	// Absolute lifetime (12h), however active.
	s = e.login("admin", adminPassword)
	for range 12 {
		e.clock.Advance(59 * time.Minute)
		page(s)
	}
	if got := page(s); got != http.StatusOK {
		t.Errorf("at 11h48m: %d, want 200", got)
	}
	e.clock.Advance(15 * time.Minute)
	if got := page(s); got != http.StatusSeeOther {
		t.Errorf("past 12h: %d, want 303 to /login", got)
	}
	// Sign-out ends the session on the server, not just in the browser.
	s = e.login("admin", adminPassword)
	if w := e.do(req{method: "POST", path: "/logout", cookie: s}); w.Code != http.StatusSeeOther {
		t.Fatalf("POST /logout = %d", w.Code)
	}
	if got := page(s); got != http.StatusSeeOther {
		t.Errorf("the old cookie after sign-out: %d, want 303 to /login", got)
	}
	// A password change signs the account out everywhere.
	s = e.login("res-yes", resellerPassword)
	admin := e.login("admin", adminPassword)
	w := e.do(req{method: "POST", path: "/accounts/res-yes/password", cookie: admin,
		form: url.Values{"password": {"brand-new-pass-1"}, "password2": {"brand-new-pass-1"}}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("set password = %d: %s", w.Code, w.Body.String())
	}
	if got := page(s); got != http.StatusSeeOther {
		t.Errorf("reseller session after a password change: %d, want 303 to /login", got)
	}
	e.login("res-yes", "brand-new-pass-1")
}

func TestLoginFailures(t *testing.T) {
	e := newTestEnv(t)
	for _, f := range []url.Values{
		{"username": {"admin"}, "password": {"wrong"}},
		{"username": {"nobody"}, "password": {adminPassword}},
	} {
		w := e.do(req{method: "POST", path: "/login", form: f})
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "Wrong username or password") {
			t.Errorf("POST /login %v = %d, want 401 and one message for both cases", f, w.Code)
		}
		if len(w.Result().Cookies()) != 0 {
			t.Errorf("failed sign-in set cookies %v", w.Result().Cookies())
		}
	}
	if w := e.do(req{method: "POST", path: "/login", form: url.Values{"username": {"admin"}}}); w.Code != http.StatusBadRequest {
		t.Errorf("POST /login without a password = %d, want 400", w.Code)
	}
	// Usernames are not case-sensitive: they are stored in lowercase.
	e.login("ADMIN", adminPassword)
}

func TestCrossOriginStateChangesAreRefused(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	tests := []struct {
		name string
		r    req
		want int
	}{
		{"cross-site fetch with the cookie", req{method: "POST", path: "/api/v1/enable", cookie: admin, fetchSite: "cross-site"}, http.StatusForbidden},
		{"same-site, other origin, with the cookie", req{method: "POST", path: "/api/v1/enable", cookie: admin, fetchSite: "same-site"}, http.StatusForbidden},
		{"form post from another origin (no Sec-Fetch-Site)", req{method: "POST", path: "/enable", cookie: admin, fetchSite: "none-sent", origin: "https://evil.example", form: url.Values{}}, http.StatusForbidden},
		{"cross-site sign-in (login CSRF)", req{method: "POST", path: "/login", fetchSite: "cross-site", form: url.Values{"username": {"admin"}, "password": {adminPassword}}}, http.StatusForbidden},
		{"cross-site sign-out", req{method: "POST", path: "/logout", cookie: admin, fetchSite: "cross-site"}, http.StatusForbidden},
		{"cross-site settings change", req{method: "PUT", path: "/api/v1/settings", cookie: admin, fetchSite: "cross-site", json: `{"mode":"log"}`}, http.StatusForbidden},
		{"same origin", req{method: "POST", path: "/api/v1/disable", cookie: admin}, http.StatusOK},
		{"same origin by Origin header only", req{method: "POST", path: "/api/v1/disable", cookie: admin, fetchSite: "none-sent", origin: "http://mail.example.test:9725"}, http.StatusOK},
		{"bearer token needs no origin check", req{method: "POST", path: "/api/v1/disable", bearer: e.tokens["ci"], fetchSite: "cross-site"}, http.StatusOK},
		{"cross-site GET is harmless and allowed", req{method: "GET", path: "/api/v1/status", cookie: admin, fetchSite: "cross-site"}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := len(e.backend.Calls())
			w := e.do(tt.r)
			if w.Code != tt.want {
				t.Errorf("%s %s = %d, want %d: %s", tt.r.method, tt.r.path, w.Code, tt.want, w.Body.String())
			}
			if tt.want == http.StatusForbidden {
				if containsAny(e.backend.Calls()[calls:], "apply", "remove") {
					t.Error("a refused cross-origin request reached the kernel")
				}
				if tt.r.path == "/logout" {
					if w := e.do(req{method: "GET", path: "/", cookie: admin}); w.Code != http.StatusOK {
						t.Error("a refused cross-origin sign-out ended the session")
					}
				}
			}
		})
	}
	if p, _, _ := e.st.Policy(context.Background()); p.Enabled || p.Mode != "reject" {
		t.Errorf("policy after refused cross-origin requests: %+v", p)
	}
}

func TestBearerTokens(t *testing.T) {
	e := newTestEnv(t)
	for _, tt := range []struct {
		header string
		want   int
	}{
		{"Bearer " + e.tokens["ci"], http.StatusOK},
		{"bearer " + e.tokens["ci"], http.StatusOK},
		{"Bearer " + e.tokens["ci"] + "x", http.StatusUnauthorized},
		{"Bearer ", http.StatusUnauthorized},
		{"Basic YWRtaW46YWRtaW4=", http.StatusUnauthorized},
	} {
		r := httptestRequest("GET", "/api/v1/status")
		r.Header.Set("Authorization", tt.header)
		w := serve(e, r)
		if w.Code != tt.want {
			t.Errorf("Authorization %.20q… = %d, want %d", tt.header, w.Code, tt.want)
		}
	}
	// A revoked token stops working at once.
	if _, err := e.eng.RevokeToken(context.Background(), setup, "ci"); err != nil {
		t.Fatal(err)
	}
	if w := e.do(req{method: "GET", path: "/api/v1/status", bearer: e.tokens["ci"]}); w.Code != http.StatusUnauthorized {
		t.Errorf("revoked token = %d, want 401", w.Code)
	}
	// A reseller token follows its account's privilege as it changes.
	if _, err := e.eng.RevokePrivilege(context.Background(), setup, "res-yes", store.PrivSMTPRestrictions); err != nil {
		t.Fatal(err)
	}
	if w := e.do(req{method: "GET", path: "/api/v1/status", bearer: e.tokens["res-bot"]}); w.Code != http.StatusForbidden {
		t.Errorf("reseller token after the privilege was revoked = %d, want 403", w.Code)
	}
}

func TestChangesAreAuditedWithTheActor(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	res := e.login("res-yes", resellerPassword)
	steps := []req{
		{method: "POST", path: "/enable", cookie: res, form: url.Values{}},
		{method: "POST", path: "/api/v1/allowed", bearer: e.tokens["ci"], json: `{"kind":"user","name":"alice"}`},
		{method: "POST", path: "/api/v1/disable", bearer: e.tokens["res-bot"]},
		{method: "POST", path: "/accounts/res-no/grant", cookie: admin, form: url.Values{"privilege": {"smtp-restrictions"}}},
	}
	for _, r := range steps {
		if w := e.do(r); w.Code >= 400 {
			t.Fatalf("%s %s = %d: %s", r.method, r.path, w.Code, w.Body.String())
		}
	}
	recs := e.audit()
	type row struct{ Actor, Source, Remote, Operation string }
	var got []row
	for _, r := range recs {
		got = append(got, row{r.Actor, r.Source, r.Remote, r.Operation})
	}
	want := []row{
		{"web:admin", "web", "192.0.2.10", "account grant"},
		{"api:res-bot", "api", "192.0.2.10", "disable"},
		{"api:ci", "api", "192.0.2.10", "allow"},
		{"web:res-yes", "web", "192.0.2.10", "enable"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit log (-want +got):\n%s", diff)
	}
}

func TestEnableDisableThroughTheUI(t *testing.T) {
	e := newTestEnv(t)
	s := e.login("admin", adminPassword)
	w := e.do(req{method: "GET", path: "/", cookie: s})
	if !strings.Contains(w.Body.String(), `action="/enable"`) || strings.Contains(w.Body.String(), `action="/disable"`) {
		t.Fatalf("a disabled restriction should offer exactly one button, Enable:\n%s", w.Body.String())
	}
	w = e.do(req{method: "POST", path: "/enable", cookie: s, form: url.Values{}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Fatalf("POST /enable = %d to %q", w.Code, w.Header().Get("Location"))
	}
	if e.backend.Installed() == nil {
		t.Fatal("enable from the web did not reach the kernel")
	}
	body := e.do(req{method: "GET", path: "/", cookie: s}).Body.String()
	for _, want := range []string{`id="state">Enforcing`, `action="/disable"`, "SMTP restriction enabled (backend fake)", "by <b>web:admin</b>", `id="backend">fake`} {
		if !strings.Contains(body, want) {
			t.Errorf("status page after enable lacks %q", want)
		}
	}
	// The flash message is shown once.
	if body := e.do(req{method: "GET", path: "/", cookie: s}).Body.String(); strings.Contains(body, `id="flash"`) {
		t.Error("the flash message was shown twice")
	}
	e.do(req{method: "POST", path: "/disable", cookie: s, form: url.Values{"confirm": {"yes"}}})
	if e.backend.Installed() != nil {
		t.Error("disable from the web left rules in the kernel")
	}
	// A failing kernel is reported on the page, not hidden.
	e.backend.FailApply(errTest("netlink: operation not permitted"))
	w = e.do(req{method: "POST", path: "/enable", cookie: s, form: url.Values{}})
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "operation not permitted") || !strings.Contains(w.Body.String(), `id="state">Disabled`) {
		t.Errorf("enable with a failing kernel = %d:\n%s", w.Code, w.Body.String())
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

func TestEnableUsesTheConfiguredOrStoredBackend(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Backend = "nft" })
	w := e.do(req{method: "POST", path: "/api/v1/enable", bearer: e.tokens["ci"]})
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `unknown backend \"nft\"`) {
		t.Errorf("enable with a configured backend this build lacks = %d %s, want 400 naming it", w.Code, w.Body.String())
	}
	e = newTestEnv(t)
	if w := e.do(req{method: "POST", path: "/api/v1/enable", bearer: e.tokens["ci"]}); w.Code != http.StatusOK {
		t.Fatalf("enable = %d %s", w.Code, w.Body.String())
	}
	if p, _, _ := e.st.Policy(context.Background()); p.Backend != "fake" {
		t.Errorf("backend after enable = %q, want the one auto chose, fake", p.Backend)
	}
}

func TestAllowedValidationIsShown(t *testing.T) {
	e := newTestEnv(t)
	s := e.login("admin", adminPassword)
	for _, tt := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"kind": {"user"}, "name": {"no such user"}}, `invalid user name &#34;no such user&#34;`},
		{url.Values{"kind": {"user"}, "name": {"mallory"}}, `no such user &#34;mallory&#34;`},
		{url.Values{"kind": {"group"}, "name": {"nogroup"}}, `no such group &#34;nogroup&#34;`},
		{url.Values{"kind": {"user"}, "name": {""}}, "enter the user&#39;s name or number"},
		{url.Values{"kind": {"robot"}, "name": {"alice"}}, "kind must be"},
		{url.Values{"kind": {"user"}, "name": {"alice"}, "ports": {"587"}}, "ports need a destination"},
		{url.Values{"kind": {"user"}, "name": {"alice"}, "to": {"not a host!"}}, "destination"},
	} {
		w := e.do(req{method: "POST", path: "/allowed", cookie: s, form: tt.form})
		body := w.Body.String()
		if w.Code != http.StatusBadRequest || !strings.Contains(body, `id="error"`) || !strings.Contains(body, tt.want) {
			t.Errorf("POST /allowed %v = %d, want 400 with an error containing %q; body:\n%.3000s", tt.form, w.Code, tt.want, body)
		}
		if name := tt.form.Get("name"); name != "" && !strings.Contains(body, `value="`+template.HTMLEscapeString(name)+`"`) {
			t.Errorf("the form lost what was typed (%q)", name)
		}
	}
	if st, _ := e.eng.Status(context.Background()); len(st.AllowedUsers)+len(st.AllowedGroups) != 0 {
		t.Errorf("bad input changed the policy: %+v", st)
	}
	w := e.do(req{method: "POST", path: "/allowed", cookie: s, form: url.Values{"kind": {"group"}, "name": {"mailers"}}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("allow group mailers = %d %s", w.Code, w.Body.String())
	}
	body := e.do(req{method: "GET", path: "/allowed", cookie: s}).Body.String()
	if !strings.Contains(body, "group mailers allowed") || !strings.Contains(body, `<td>mailers</td>`) {
		t.Errorf("allowed page after allowing mailers:\n%s", body)
	}
	e.do(req{method: "POST", path: "/allowed/remove", cookie: s, form: url.Values{"kind": {"group"}, "name": {"mailers"}, "confirm": {"yes"}}})
	if st, _ := e.eng.Status(context.Background()); len(st.AllowedGroups) != 0 {
		t.Errorf("remove left groups %v", st.AllowedGroups)
	}
}

func TestAPIAllowedAndSettings(t *testing.T) {
	e := newTestEnv(t)
	tok := e.tokens["ci"]
	api := func(method, path, body string) (int, string) {
		w := e.do(req{method: method, path: path, bearer: tok, json: body})
		return w.Code, w.Body.String()
	}
	for _, tt := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"alice"}`, 200, `"changed": true`},
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"alice"}`, 200, `"changed": false`},
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"4242"}`, 200, `"changed": true`}, // a uid without an account
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"bob","to":"192.0.2.0/24","ports":[587]}`, 200, "192.0.2.0/24"},
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"mallory"}`, 400, `no such user \"mallory\"`},
		{"POST", "/api/v1/allowed", `{"kind":"host","name":"alice"}`, 400, "kind must be"},
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"alice","admin":true}`, 400, "unknown field"},
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"alice"} {}`, 400, "data after the object"},
		{"POST", "/api/v1/allowed", `not json`, 400, "invalid JSON"},
		{"DELETE", "/api/v1/allowed", `{"kind":"user","name":"bob","to":"192.0.2.0/24"}`, 200, "no longer"},
		{"DELETE", "/api/v1/allowed", `{"kind":"user","name":"alice","ports":[25]}`, 400, "ports cannot be given"},
		{"DELETE", "/api/v1/allowed", `{"kind":"user","name":"alice"}`, 200, "revoked"},
		{"PUT", "/api/v1/settings", `{"ports":[0]}`, 400, "ports:"},
		{"PUT", "/api/v1/settings", `{"ports":[25],"mode":"bogus"}`, 400, "unknown mode"},
		{"PUT", "/api/v1/settings", `{"mode":"log","allow_local":false}`, 200, `"mode": "log"`},
		{"PUT", "/api/v1/settings", `{}`, 200, "settings unchanged"},
	} {
		code, body := api(tt.method, tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s %s = %d %s, want %d containing %q", tt.method, tt.path, tt.body, code, body, tt.code, tt.want)
		}
	}
	got := decode[allowedList](t, e.do(req{method: "GET", path: "/api/v1/allowed", bearer: tok}))
	if len(got.Exceptions) != 0 || !cmp.Equal(got.Users, []string{"4242"}) || len(got.Groups) != 0 {
		t.Errorf("GET /api/v1/allowed = %+v", got)
	}
	set := decode[settings](t, e.do(req{method: "GET", path: "/api/v1/settings", bearer: tok}))
	if diff := cmp.Diff(settings{Ports: []uint16{25, 465, 587, 2525}, Mode: "log", AllowLocal: false, RateLimit: "off", HoldAfter: "off", HoldFor: "1h"}, set); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	// A rejected PUT changes nothing, not even the fields that were valid.
	api("PUT", "/api/v1/settings", `{"mode":"reject","ports":[70000]}`)
	if set := decode[settings](t, e.do(req{method: "GET", path: "/api/v1/settings", bearer: tok})); set.Mode != "log" {
		t.Errorf("a rejected PUT changed the mode to %q", set.Mode)
	}
	// Bodies must say they are JSON.
	r := httptestRequest("POST", "/api/v1/allowed")
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("Content-Type", "text/plain")
	r.Body = readCloser(`{"kind":"user","name":"alice"}`)
	if w := serve(e, r); w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body = %d, want 415", w.Code)
	}
}

func TestSettingsPage(t *testing.T) {
	e := newTestEnv(t)
	s := e.login("admin", adminPassword)
	w := e.do(req{method: "POST", path: "/settings", cookie: s, form: url.Values{"ports": {"25, 2525"}, "mode": {"redirect"}}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("POST /settings = %d %s", w.Code, w.Body.String())
	}
	p, _, _ := e.st.Policy(context.Background())
	if p.Mode != "redirect" || p.AllowLocal || !slices.Equal(p.Ports, []uint16{25, 2525}) {
		t.Errorf("policy after saving settings: %+v", p)
	}
	w = e.do(req{method: "POST", path: "/settings", cookie: s, form: url.Values{"ports": {"25,99999"}, "mode": {"reject"}, "allow_local": {"on"}}})
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "99999") || !strings.Contains(w.Body.String(), `value="25,99999"`) {
		t.Errorf("bad ports = %d:\n%s", w.Code, w.Body.String())
	}
	if p2, _, _ := e.st.Policy(context.Background()); !p2.Equal(p) {
		t.Errorf("rejected settings changed the policy: %+v", p2)
	}
}

func TestResellerSeesOnlyTheirUsers(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	now := e.clock.Now()
	if err := e.eng.RecordEvents(ctx, []store.Event{
		{UID: 1001, User: "alice", Family: 4, Address: "192.0.2.25", Port: 25, Action: "blocked", Count: 7, FirstSeen: now.Add(-2 * time.Hour), LastSeen: now.Add(-2 * time.Hour)},
		{UID: 1002, User: "bob", Family: 4, Address: "198.51.100.25", Port: 587, Action: "explained", Count: 3, FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-time.Hour), Ref: "sg-0123456789"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if _, err := e.eng.Allow(ctx, engine.Actor{Name: "root", Source: "cli"}, "user", u); err != nil {
			t.Fatal(err)
		}
	}
	users := func(evs []engine.EventView) []string {
		var out []string
		for _, ev := range evs {
			out = append(out, ev.User)
		}
		slices.Sort(out)
		return out
	}
	for _, tt := range []struct {
		name, query, token string
		want               []string
	}{
		{"admin sees all", "", "ci", []string{"alice", "bob"}},
		{"admin filters", "?user=bob", "ci", []string{"bob"}},
		{"reseller sees own", "", "res-bot", []string{"alice"}},
		{"reseller cannot filter into others", "?user=bob", "res-bot", nil},
		{"since", "?since=90m", "ci", []string{"bob"}},
		{"explain reference", "?ref=sg-0123456789", "ci", []string{"bob"}},
		{"unknown reference", "?ref=sg-9999999999", "ci", nil},
		{"explained action", "?action=explained", "ci", []string{"bob"}},
		{"reseller cannot look up others' references", "?ref=sg-0123456789", "res-bot", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(req{method: "GET", path: "/api/v1/events" + tt.query, bearer: e.tokens[tt.token]})
			if got := users(decodeEventsPage(t, w).Events); !cmp.Equal(got, tt.want) {
				t.Errorf("GET /api/v1/events%s as %s: users %v, want %v", tt.query, tt.token, got, tt.want)
			}
		})
	}
	if w := e.do(req{method: "GET", path: "/api/v1/events?since=yesterday", bearer: e.tokens["ci"]}); w.Code != http.StatusBadRequest {
		t.Errorf("since=yesterday = %d, want 400", w.Code)
	}
	// The page: table and chart with alice only, no allow command for resellers.
	body := e.do(req{method: "GET", path: "/events", cookie: e.login("res-yes", resellerPassword)}).Body.String()
	if !strings.Contains(body, "192.0.2.25") || strings.Contains(body, "198.51.100.25") || strings.Contains(body, "bob") {
		t.Errorf("reseller's events page shows others' attempts:\n%s", body)
	}
	if !strings.Contains(body, `id="chart"`) || !strings.Contains(body, "7 in total") || strings.Contains(body, "smtpguard allow user") {
		t.Errorf("reseller's events page: chart or allow commands wrong:\n%s", body)
	}
	adminBody := e.do(req{method: "GET", path: "/events", cookie: e.login("admin", adminPassword)}).Body.String()
	// alice and bob are allowed now: their rows offer no allow button.
	if !strings.Contains(adminBody, "10 in total") || strings.Contains(adminBody, "smtpguard allow user bob --to 198.51.100.25 --port 587") || !strings.Contains(adminBody, "allowed now") {
		t.Errorf("admin's events page lacks the total or offers to allow an allowed user:\n%s", adminBody)
	}
	// The reseller's status shows their own allowed users only.
	st := decode[map[string]any](t, e.do(req{method: "GET", path: "/api/v1/status", bearer: e.tokens["res-bot"]}))
	if got := st["allowed_users"]; !cmp.Equal(got, []any{"alice"}) {
		t.Errorf("reseller status allowed_users = %v, want [alice]", got)
	}
	for _, key := range []string{"enabled", "backend", "mode", "ports", "allowed_users", "allowed_groups"} {
		if _, ok := st[key]; !ok {
			t.Errorf("reseller status lacks %q", key)
		}
	}
	if _, ok := st["allowed_uids"]; ok {
		t.Error("reseller status reveals allowed_uids")
	}
	full := decode[map[string]any](t, e.do(req{method: "GET", path: "/api/v1/status", bearer: e.tokens["ci"]}))
	if got := full["allowed_users"]; !cmp.Equal(got, []any{"alice", "bob"}) {
		t.Errorf("admin status allowed_users = %v", got)
	}
}

func TestAccountsPage(t *testing.T) {
	e := newTestEnv(t)
	s := e.login("admin", adminPassword)
	post := func(path string, form url.Values) (int, string) {
		w := e.do(req{method: "POST", path: path, cookie: s, form: form})
		return w.Code, w.Body.String()
	}
	for _, tt := range []struct {
		path string
		form url.Values
		code int
		want string
	}{
		{"/accounts", url.Values{"name": {"Bad Name"}, "role": {"reseller"}, "password": {"long-enough-1"}, "password2": {"long-enough-1"}}, 400, "invalid account name"},
		{"/accounts", url.Values{"name": {"r2"}, "role": {"root"}, "password": {"long-enough-1"}, "password2": {"long-enough-1"}}, 400, "unknown role"},
		{"/accounts", url.Values{"name": {"r2"}, "role": {"reseller"}, "password": {"short"}, "password2": {"short"}}, 400, "too short"},
		{"/accounts", url.Values{"name": {"r2"}, "role": {"reseller"}, "password": {"long-enough-1"}, "password2": {"long-enough-2"}}, 400, "differ"},
		{"/accounts", url.Values{"name": {"admin"}, "role": {"admin"}, "password": {"long-enough-1"}, "password2": {"long-enough-1"}}, 400, "already exists"},
		{"/accounts", url.Values{"name": {"r2"}, "role": {"reseller"}, "password": {"long-enough-1"}, "password2": {"long-enough-1"}}, 303, ""},
		{"/accounts/r2/users", url.Values{"users": {"alice mallory"}}, 400, `no such system user &#34;mallory&#34;`},
		{"/accounts/r2/users", url.Values{"users": {"alice, carol"}}, 303, ""},
		{"/accounts/admin/users", url.Values{"users": {"alice"}}, 400, "only resellers own users"},
		{"/accounts/admin/grant", url.Values{"privilege": {"smtp-restrictions"}}, 400, "holds every privilege"},
		{"/accounts/r2/grant", url.Values{"privilege": {"root-shell"}}, 400, "unknown privilege"},
		{"/accounts/ghost/grant", url.Values{"privilege": {"smtp-restrictions"}}, 404, "not found"},
		{"/accounts/r2/grant", url.Values{"privilege": {"smtp-restrictions"}}, 303, ""},
		{"/accounts/admin/delete", url.Values{}, 400, "signed in with"},
		{"/tokens", url.Values{"name": {"r2-bot"}, "role": {"reseller"}}, 400, "choose it under Acts for account"},
		{"/tokens", url.Values{"name": {"r2-bot"}, "role": {"reseller"}, "account": {"r2"}}, 200, "sgt_"},
		{"/tokens/ghost/revoke", url.Values{"confirm": {"yes"}}, 404, "not found"},
	} {
		code, body := post(tt.path, tt.form)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("POST %s %v = %d, want %d containing %q:\n%.2000s", tt.path, tt.form, code, tt.code, tt.want, body)
		}
	}
	a, err := e.st.Account(context.Background(), "r2")
	if err != nil || !a.Has(store.PrivSMTPRestrictions) || !cmp.Equal(a.Users, []string{"alice", "carol"}) {
		t.Errorf("account r2 = %+v, %v", a, err)
	}
	if code, _ := post("/accounts/r2/delete", url.Values{"confirm": {"yes"}}); code != http.StatusSeeOther {
		t.Errorf("delete r2 = %d", code)
	}
	if toks, _ := e.st.Tokens(context.Background()); slices.ContainsFunc(toks, func(t store.Token) bool { return t.Name == "r2-bot" }) {
		t.Error("deleting an account left its token")
	}
	body := e.do(req{method: "GET", path: "/accounts", cookie: s}).Body.String()
	if strings.Contains(body, "sgt_") {
		t.Error("a token secret is shown again after creation")
	}
}

func TestChart(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 30, 0, 0, time.UTC)
	evs := []engine.EventView{
		{Event: store.Event{Count: 4, LastSeen: now.Add(-10 * time.Minute)}},
		{Event: store.Event{Count: 6, LastSeen: now.Add(-15 * time.Minute)}},
		{Event: store.Event{Count: 3, LastSeen: now.Add(-5 * time.Hour)}},
		{Event: store.Event{Count: 100, LastSeen: now.Add(-48 * time.Hour)}}, // outside
	}
	c := buildChart(evs, now, 24*time.Hour)
	if len(c.Bars) != 24 || c.Total != 13 || c.Bucket != "hour" {
		t.Fatalf("chart = %d bars, total %d, bucket %q; want 24, 13, hour", len(c.Bars), c.Total, c.Bucket)
	}
	last := c.Bars[23]
	if last.Y != c.Top || last.H != c.Bottom-c.Top {
		t.Errorf("the tallest bar (10 attempts, scale 10) = %+v, want it to fill the plot", last)
	}
	if !strings.Contains(last.Label, "10 attempts") {
		t.Errorf("last bar label %q", last.Label)
	}
	if tallest := c.Bars[18]; tallest.H <= 0 || tallest.H >= last.H {
		t.Errorf("bar of 3 attempts = %+v", tallest)
	}
	for i, b := range c.Bars {
		if b.X < c.Left || b.X+b.W > c.Right || b.Y < c.Top || b.Y+b.H > c.Bottom+0.1 {
			t.Errorf("bar %d %+v leaves the plot", i, b)
		}
	}
	if labels := []string{c.YTicks[0].Label, c.YTicks[len(c.YTicks)-1].Label}; !cmp.Equal(labels, []string{"0", "10"}) {
		t.Errorf("y axis %v, want 0 to 10", labels)
	}
	empty := buildChart(nil, now, time.Hour)
	if len(empty.Bars) != 12 || empty.Total != 0 {
		t.Errorf("empty chart: %d bars, total %d", len(empty.Bars), empty.Total)
	}
	for _, tt := range []struct{ in, want int64 }{{0, 1}, {1, 1}, {3, 5}, {10, 10}, {11, 20}, {999, 1000}} {
		if got := niceCeil(tt.in); got != tt.want {
			t.Errorf("niceCeil(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestResellerWithoutPrivilegeIsToldWhy(t *testing.T) {
	e := newTestEnv(t)
	s := e.login("res-no", resellerPassword)
	w := e.do(req{method: "GET", path: "/", cookie: s})
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "does not have the smtp-restrictions privilege") {
		t.Errorf("GET / as a reseller without the privilege = %d:\n%s", w.Code, w.Body.String())
	}
	if strings.Contains(w.Body.String(), `href="/allowed"`) || strings.Contains(w.Body.String(), `href="/events"`) {
		t.Error("the navigation offers pages the reseller may not open")
	}
	api := e.do(req{method: "GET", path: "/api/v1/status", cookie: s})
	if got := decode[map[string]string](t, api); api.Code != http.StatusForbidden || !strings.Contains(got["error"], "smtp-restrictions") {
		t.Errorf("GET /api/v1/status = %d %v", api.Code, got)
	}
}

func TestNoSecretsInLogs(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newTestEnv(t, func(c *Config) { c.Logger = logger })
	session := e.login("admin", adminPassword)
	e.do(req{method: "POST", path: "/login", form: url.Values{"username": {"admin"}, "password": {"typo-" + adminPassword}}})
	e.do(req{method: "POST", path: "/login", form: url.Values{"username": {adminPassword}, "password": {"x"}}}) // password typed as the name: that one is on the user
	e.do(req{method: "GET", path: "/api/v1/status", bearer: e.tokens["ci"]})
	e.do(req{method: "GET", path: "/api/v1/status", bearer: e.tokens["ci"] + "-wrong"})
	e.backend.FailApply(errTest("kernel says no"))
	e.do(req{method: "POST", path: "/api/v1/enable", cookie: session})
	created := e.do(req{method: "POST", path: "/tokens", cookie: session, form: url.Values{"name": {"fresh"}, "role": {"admin"}}})
	e.do(req{method: "POST", path: "/logout", cookie: session})
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "failed sign-in") || !strings.Contains(out, "kernel says no") {
		t.Fatalf("the log lacks the events it should record:\n%s", out)
	}
	secrets := map[string]string{
		"wrong password": "typo-" + adminPassword, "session cookie": session, "admin token": e.tokens["ci"],
		"session hash": store.HashSecret(session),
	}
	if i := strings.Index(created.Body.String(), "sgt_"); i >= 0 {
		secrets["new token"] = created.Body.String()[i : i+47]
	}
	for what, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains the %s", what)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestMTAWithoutAManageableMTA(t *testing.T) {
	e := newTestEnv(t)
	tok := e.tokens["ci"]
	st := decode[mtaStatus](t, e.do(req{method: "GET", path: "/api/v1/mta", bearer: tok}))
	if st.MTA != "none" || st.Managed || !strings.Contains(st.Reason, "no MTA installed") {
		t.Errorf("GET /api/v1/mta = %+v, want mta none, not managed, and why", st)
	}
	for _, tt := range []struct {
		body string
		code int
		want string
	}{
		{`{"max_connections": 100}`, http.StatusConflict, "no MTA installed"},
		{`{"max_connections": "many"}`, http.StatusBadRequest, "invalid JSON"},
		{`{"max_connections": 100, "extra": 1}`, http.StatusBadRequest, "unknown field"},
	} {
		w := e.do(req{method: "PUT", path: "/api/v1/mta", bearer: tok, json: tt.body})
		if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.want) {
			t.Errorf("PUT /api/v1/mta %s = %d %s, want %d containing %q", tt.body, w.Code, w.Body.String(), tt.code, tt.want)
		}
	}
	s := e.login("admin", adminPassword)
	body := e.do(req{method: "GET", path: "/mta", cookie: s}).Body.String()
	if !strings.Contains(body, `id="mta-unmanaged"`) || strings.Contains(body, `id="mta-form"`) {
		t.Errorf("the mail server page offers a form for an MTA it cannot manage:\n%s", body)
	}
	w := e.do(req{method: "POST", path: "/mta", cookie: s, form: url.Values{"max_connections": {"lots"}}})
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not a whole number") {
		t.Errorf("POST /mta lots = %d", w.Code)
	}
}

func TestStatusPageShortensLongLists(t *testing.T) {
	e := newTestEnv(t)
	tok := e.tokens["ci"]
	const n = listShown + 7
	for i := range n {
		w := e.do(req{method: "POST", path: "/api/v1/allowed", json: fmt.Sprintf(`{"kind":"user","name":"%d"}`, 60000+i), bearer: tok})
		if w.Code != http.StatusOK {
			t.Fatalf("allow %d: %d %s", 60000+i, w.Code, w.Body.String())
		}
	}
	s := e.login("admin", adminPassword)
	body := e.do(req{method: "GET", path: "/", cookie: s}).Body.String()
	// root + n allowed uids; the MTA user of the test passwd is absent.
	if strings.Count(body, "allowed user 6") != listShown-1 || !strings.Contains(body, `id="more-uids">and 8 more`) ||
		!strings.Contains(body, " and 7 more ·") {
		t.Errorf("status page with %d allowed users does not show the first %d and count the rest", n, listShown)
	}
	all := e.do(req{method: "GET", path: "/?all=1", cookie: s}).Body.String()
	if strings.Count(all, "allowed user 6") != n || strings.Contains(all, "more-uids") {
		t.Errorf("/?all=1 does not list all %d allowed users", n)
	}
}

func TestAllowedPageFindsAmongManyUsers(t *testing.T) {
	e := newTestEnv(t)
	tok := e.tokens["ci"]
	const n = listShown + 3
	for i := range n {
		if w := e.do(req{method: "POST", path: "/api/v1/allowed", json: fmt.Sprintf(`{"kind":"user","name":"%d"}`, 70000+i), bearer: tok}); w.Code != http.StatusOK {
			t.Fatalf("allow: %d %s", w.Code, w.Body.String())
		}
	}
	s := e.login("admin", adminPassword)
	body := e.do(req{method: "GET", path: "/allowed", cookie: s}).Body.String()
	if strings.Count(body, `name="name" value="70`) != listShown || !strings.Contains(body, `id="more-users">and 3 more`) {
		t.Errorf("/allowed with %d users does not show %d and count the rest", n, listShown)
	}
	found := e.do(req{method: "GET", path: "/allowed?q=70052", cookie: s}).Body.String()
	if strings.Count(found, `name="name" value="70`) != 1 || !strings.Contains(found, `value="70052"`) {
		t.Errorf("/allowed?q=70052 does not show just that user")
	}
	none := e.do(req{method: "GET", path: "/allowed?q=nobody", cookie: s}).Body.String()
	if !strings.Contains(none, "No allowed user matches “nobody”") {
		t.Errorf("/allowed?q=nobody does not say nothing matched")
	}
}
