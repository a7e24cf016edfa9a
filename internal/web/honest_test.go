package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

// Issue 16: the web UI as an administrator uses it every day. These tests
// cover what does not need a browser; browser_ui_test.go covers the rest.

// flashOf returns the tone and text of the message the next page shows.
func (e *testEnv) flashOf(cookie string) (tone, text string) {
	e.t.Helper()
	body := e.do(req{method: "GET", path: "/", cookie: cookie}).Body.String()
	i := strings.Index(body, `id="flash" data-tone="`)
	if i < 0 {
		return "", ""
	}
	rest := body[i+len(`id="flash" data-tone="`):]
	tone, rest, _ = strings.Cut(rest, `"`)
	text, _, _ = strings.Cut(strings.TrimPrefix(rest, ">"), "</div>")
	return tone, text
}

// TestEveryFormRedirectsAfterPost: a successful form answers 303 to a
// page (post/redirect/get), so reloading the page shown never posts again.
// Token creation is the one exception: its secret is shown once, in the
// answer, and never stored where a GET could show it again.
func TestEveryFormRedirectsAfterPost(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	yes := url.Values{"confirm": {"yes"}}
	for _, tt := range []struct {
		path string
		form url.Values
		to   string
	}{
		{"/enable", url.Values{}, "/"},
		{"/allowed", url.Values{"kind": {"user"}, "name": {"alice"}}, "/allowed"},
		{"/allowed/remove", url.Values{"kind": {"user"}, "name": {"alice"}, "confirm": {"yes"}}, "/allowed"},
		{"/allowed", url.Values{"kind": {"user"}, "name": {"bob"}, "back": {"/events?user=bob"}}, "/events?user=bob"},
		{"/allowed", url.Values{"kind": {"user"}, "name": {"carol"}, "back": {"//evil.example/"}}, "/allowed"}, // an allow returns only to /events
		{"/settings", url.Values{"ports": {"25, 587"}, "mode": {"reject"}, "allow_local": {"on"}}, "/settings"},
		{"/accounts", url.Values{"name": {"r2"}, "role": {"reseller"}, "password": {"long-enough-1"}, "password2": {"long-enough-1"}}, "/accounts"},
		{"/accounts/r2/grant", url.Values{"privilege": {store.PrivSMTPRestrictions}}, "/accounts"},
		{"/accounts/r2/revoke", url.Values{"privilege": {store.PrivSMTPRestrictions}}, "/accounts"},
		{"/accounts/r2/users", url.Values{"users": {"alice"}}, "/accounts"},
		{"/accounts/r2/password", url.Values{"password": {"long-enough-2"}, "password2": {"long-enough-2"}}, "/accounts"},
		{"/accounts/r2/delete", yes, "/accounts"},
		{"/tokens/res-bot/revoke", yes, "/accounts"},
		{"/disable", yes, "/"},
	} {
		w := e.do(req{method: "POST", path: tt.path, cookie: admin, form: tt.form})
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != tt.to {
			t.Errorf("POST %s %v = %d to %q, want 303 to %s; body:\n%.1500s", tt.path, tt.form, w.Code, w.Header().Get("Location"), tt.to, w.Body.String())
		}
	}
}

// TestChangesThatOpenTheServerAskFirst: without the confirmation these
// change nothing and answer a page whose one button posts the same form
// again, confirmed (no script needed); with it they act.
func TestChangesThatOpenTheServerAskFirst(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name     string
		path     string
		form     url.Values
		question string
		done     func(e *testEnv) bool
	}{
		{"disable", "/disable", url.Values{}, "Disable the SMTP restriction on mail.example.test?",
			func(e *testEnv) bool { return e.backend.Installed() == nil }},
		{"log mode", "/settings", url.Values{"ports": {"25, 465, 587"}, "mode": {"log"}, "allow_local": {"on"}}, "Switch the mode to log only?",
			func(e *testEnv) bool { p, _, _ := e.st.Policy(ctx); return p.Mode == "log" }},
		{"remove user", "/allowed/remove", url.Values{"kind": {"user"}, "name": {"alice"}}, "Remove user alice from the allowed users?",
			func(e *testEnv) bool { st, _ := e.eng.Status(ctx); return len(st.AllowedUsers) == 0 }},
		{"remove exception", "/allowed/remove", url.Values{"kind": {"user"}, "name": {"bob"}, "to": {"relay.example.test"}}, "Remove the exception of user bob for relay.example.test?",
			func(e *testEnv) bool { st, _ := e.eng.Status(ctx); return len(st.Exceptions) == 0 }},
		{"delete account", "/accounts/res-no/delete", url.Values{}, "Delete the account res-no?",
			func(e *testEnv) bool { _, err := e.st.Account(ctx, "res-no"); return err != nil }},
		{"revoke token", "/tokens/ci/revoke", url.Values{}, "Revoke the API token ci?",
			func(e *testEnv) bool {
				_, err := e.st.TokenBySecret(ctx, e.tokens["ci"])
				return err != nil
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			for _, r := range []string{
				`{"kind":"user","name":"alice"}`, `{"kind":"user","name":"bob","to":"relay.example.test"}`,
			} {
				if w := e.do(req{method: "POST", path: "/api/v1/allowed", bearer: e.tokens["ci"], json: r}); w.Code != http.StatusOK {
					t.Fatalf("allow %s = %d %s", r, w.Code, w.Body.String())
				}
			}
			if w := e.do(req{method: "POST", path: "/api/v1/enable", bearer: e.tokens["ci"]}); w.Code != http.StatusOK {
				t.Fatalf("enable = %d", w.Code)
			}
			admin := e.login("admin", adminPassword)
			before := len(e.audit())
			w := e.do(req{method: "POST", path: tt.path, cookie: admin, form: tt.form})
			body := w.Body.String()
			if w.Code != http.StatusOK || !strings.Contains(body, `id="confirm"`) || !strings.Contains(body, tt.question) {
				t.Fatalf("unconfirmed POST %s = %d, want 200 asking %q:\n%.3000s", tt.path, w.Code, tt.question, body)
			}
			if tt.done(e) || len(e.audit()) != before {
				t.Fatalf("unconfirmed POST %s changed something", tt.path)
			}
			// The page's form posts the same fields again, confirmed.
			if !strings.Contains(body, `action="`+tt.path+`"`) || !strings.Contains(body, `name="confirm" value="yes"`) {
				t.Errorf("the confirmation form does not post to %s with confirm=yes", tt.path)
			}
			for k, vs := range tt.form {
				if !strings.Contains(body, `name="`+k+`" value="`+vs[0]+`"`) {
					t.Errorf("the confirmation form lost field %s=%s", k, vs[0])
				}
			}
			confirmed := url.Values{"confirm": {"yes"}}
			for k, vs := range tt.form {
				confirmed[k] = vs
			}
			if w := e.do(req{method: "POST", path: tt.path, cookie: admin, form: confirmed}); w.Code != http.StatusSeeOther {
				t.Fatalf("confirmed POST %s = %d, want 303:\n%.2000s", tt.path, w.Code, w.Body.String())
			}
			if !tt.done(e) {
				t.Errorf("confirmed POST %s did nothing", tt.path)
			}
		})
	}
}

// TestOnlyOpeningSettingsAskFirst: saving settings that do not switch to
// log mode acts at once, and so does saving log mode when already in it.
func TestOnlyOpeningSettingsAskFirst(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	for _, mode := range []string{"redirect", "reject"} {
		w := e.do(req{method: "POST", path: "/settings", cookie: admin, form: url.Values{"ports": {"25"}, "mode": {mode}}})
		if w.Code != http.StatusSeeOther {
			t.Errorf("settings mode %s = %d, want 303 without a question", mode, w.Code)
		}
	}
	e.do(req{method: "POST", path: "/settings", cookie: admin, form: url.Values{"ports": {"25"}, "mode": {"log"}, "confirm": {"yes"}}})
	if w := e.do(req{method: "POST", path: "/settings", cookie: admin, form: url.Values{"ports": {"25, 587"}, "mode": {"log"}}}); w.Code != http.StatusSeeOther {
		t.Errorf("settings in log mode already = %d, want 303 without a question", w.Code)
	}
}

// TestFlashSaysWhenNothingChangedOrSomethingIsWrong: success is green only
// when something changed; an exception whose host does not resolve is a
// warning in words; no message tells anyone to use a command-line flag.
func TestFlashSaysWhenNothingChangedOrSomethingIsWrong(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	post := func(path string, form url.Values) {
		t.Helper()
		if w := e.do(req{method: "POST", path: path, cookie: admin, form: form}); w.Code != http.StatusSeeOther {
			t.Fatalf("POST %s %v = %d:\n%.2000s", path, form, w.Code, w.Body.String())
		}
	}
	type got struct{ Tone, Has string }
	check := func(what string, want got, not ...string) {
		t.Helper()
		tone, text := e.flashOf(admin)
		if tone != want.Tone || !strings.Contains(text, want.Has) {
			t.Errorf("%s: flash %q %q, want tone %q containing %q", what, tone, text, want.Tone, want.Has)
		}
		for _, n := range append(not, "--") {
			if strings.Contains(text, n) {
				t.Errorf("%s: flash %q contains %q", what, text, n)
			}
		}
	}
	post("/allowed", url.Values{"kind": {"user"}, "name": {"alice"}})
	check("allow alice", got{toneOK, "user alice allowed"})
	post("/allowed", url.Values{"kind": {"user"}, "name": {"alice"}})
	check("allow alice again", got{toneInfo, "already"})
	post("/allowed", url.Values{"kind": {"user"}, "name": {"bob"}, "to": {"relay.example.test"}, "ports": {"587"}})
	check("exception to a resolving host", got{toneOK, "relay.example.test"})
	post("/allowed", url.Values{"kind": {"user"}, "name": {"bob"}, "to": {"relay.example.test"}, "ports": {"587"}})
	check("the same exception again", got{toneInfo, "already allowed"})
	post("/allowed", url.Values{"kind": {"user"}, "name": {"bob"}, "to": {"smtp.typo.example"}})
	check("exception to a host that does not resolve", got{toneWarn, "smtp.typo.example does not resolve to any address now (no such name in DNS)"}, "lookup smtp.typo.example")
	post("/enable", url.Values{})
	post("/enable", url.Values{})
	check("enable twice", got{toneInfo, ""})
	// And the allowed page words the lookup too, not the resolver's error.
	body := e.do(req{method: "GET", path: "/allowed", cookie: admin}).Body.String()
	if strings.Contains(body, "lookup smtp.typo.example") || !strings.Contains(body, "no such name in DNS") {
		t.Errorf("the allowed page shows the raw DNS error or no words for it")
	}
	// Errors shown on the page lose their flags too.
	w := e.do(req{method: "POST", path: "/tokens", cookie: admin, form: url.Values{"name": {"bot"}, "role": {"reseller"}}})
	if strings.Contains(w.Body.String(), "--account") {
		t.Errorf("a web error tells to use --account:\n%.2000s", w.Body.String())
	}
}

func TestSafeLocal(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "/",
		"/":                         "/",
		"/events?user=alice&x=1":    "/events?user=alice&x=1",
		"/accounts":                 "/accounts",
		"//evil.example/":           "/",
		"/\\evil.example":           "/",
		"https://evil.example/":     "/",
		"javascript:alert(1)":       "/",
		"evil.example":              "/",
		"/login?next=/x":            "/",
		"/logout":                   "/",
		"/%2F%2Fevil.example":       "/", // decodes to //evil.example: refused to be safe
		"/ok\r\nLocation: http://x": "/",
	} {
		if got := safeLocal(in); got != want {
			t.Errorf("safeLocal(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSignInReturnsToThePageAskedFor: an anonymous GET is sent to sign in
// with the page it asked for, and back there after; a next that points
// anywhere else lands on the status page.
func TestSignInReturnsToThePageAskedFor(t *testing.T) {
	e := newTestEnv(t)
	w := e.do(req{method: "GET", path: "/events?user=alice&since=7d"})
	loc := w.Header().Get("Location")
	if w.Code != http.StatusSeeOther || loc != "/login?next="+url.QueryEscape("/events?user=alice&since=7d") {
		t.Fatalf("anonymous GET /events = %d to %q", w.Code, loc)
	}
	page := e.do(req{method: "GET", path: loc}).Body.String()
	if !strings.Contains(page, `name="next" value="/events?user=alice&amp;since=7d"`) {
		t.Errorf("the sign-in form does not carry the page to return to:\n%s", page)
	}
	for next, want := range map[string]string{
		"/events?user=alice&since=7d": "/events?user=alice&since=7d",
		"":                            "/",
		"//evil.example/steal":        "/",
		"https://evil.example/":       "/",
		"/\\evil.example":             "/",
	} {
		w := e.do(req{method: "POST", path: "/login", form: url.Values{"username": {"admin"}, "password": {adminPassword}, "next": {next}}})
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != want {
			t.Errorf("sign-in with next=%q = %d to %q, want %s", next, w.Code, w.Header().Get("Location"), want)
		}
	}
	// A wrong password keeps where to go.
	w = e.do(req{method: "POST", path: "/login", form: url.Values{"username": {"admin"}, "password": {"wrong"}, "next": {"/audit"}}})
	if !strings.Contains(w.Body.String(), `name="next" value="/audit"`) {
		t.Errorf("after a wrong password the form forgot the page to return to")
	}
}

// TestSignInShowsFailedAttemptsSinceTheLastOne: the owner sees how many
// failed sign-ins to their account happened since their last successful
// one, once.
func TestSignInShowsFailedAttemptsSinceTheLastOne(t *testing.T) {
	e := newTestEnv(t)
	first := e.login("admin", adminPassword)
	if tone, text := e.flashOf(first); tone != "" {
		t.Errorf("first sign-in shows %q %q, want nothing", tone, text)
	}
	for _, from := range []string{"203.0.113.7:1", "203.0.113.8:1"} {
		e.do(req{method: "POST", path: "/login", remote: from, form: url.Values{"username": {"admin"}, "password": {"guess"}}})
	}
	e.do(req{method: "POST", path: "/login", remote: "203.0.113.9:1", form: url.Values{"username": {"res-yes"}, "password": {"guess"}}})
	e.clock.Advance(time.Minute)
	second := e.login("admin", adminPassword)
	tone, text := e.flashOf(second)
	if tone != toneWarn || !strings.Contains(text, "2 failed sign-ins to your account since your last successful one") || !strings.Contains(text, "203.0.113.8") || !strings.Contains(text, "UTC") {
		t.Errorf("sign-in after 2 failures shows %q %q", tone, text)
	}
	third := e.login("admin", adminPassword)
	if tone, text := e.flashOf(third); tone != "" {
		t.Errorf("the next sign-in shows %q %q again, want nothing", tone, text)
	}
}

// TestUnknownURLsAnswerInOurWords: a styled page for people, {"error": ...}
// for API clients, with the methods a known path accepts.
func TestUnknownURLsAnswerInOurWords(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	for _, tt := range []struct {
		r     req
		code  int
		json  bool
		want  string
		allow string
	}{
		{req{method: "GET", path: "/nope", cookie: admin}, 404, false, "there is no page at /nope", ""},
		{req{method: "GET", path: "/nope"}, 404, false, "there is no page at /nope", ""},
		{req{method: "GET", path: "/api/v1/nope", bearer: e.tokens["ci"]}, 404, true, "no API endpoint /api/v1/nope", ""},
		{req{method: "GET", path: "/api/v1/nope"}, 404, true, "no API endpoint", ""},
		{req{method: "PATCH", path: "/api/v1/settings", bearer: e.tokens["ci"]}, 405, true, "does not accept PATCH", "GET, HEAD, PUT"},
		{req{method: "DELETE", path: "/api/v1/status", bearer: e.tokens["ci"]}, 405, true, "use GET or HEAD", "GET, HEAD"},
		{req{method: "GET", path: "/enable", cookie: admin}, 405, false, "does not accept GET", "POST"},
		{req{method: "GET", path: "/a/../events", cookie: admin}, http.StatusTemporaryRedirect, false, "", ""},
	} {
		w := e.do(tt.r)
		if w.Code != tt.code {
			t.Errorf("%s %s = %d, want %d", tt.r.method, tt.r.path, w.Code, tt.code)
		}
		if got := w.Header().Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tt.r.method, tt.r.path, got, tt.allow)
		}
		if tt.code == http.StatusTemporaryRedirect {
			if loc := w.Header().Get("Location"); loc != "/events" {
				t.Errorf("%s %s: Location %q, want the mux's redirect to /events", tt.r.method, tt.r.path, loc)
			}
			continue
		}
		if tt.json {
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Header().Get("Content-Type") != "application/json" || !strings.Contains(body["error"], tt.want) {
				t.Errorf("%s %s answered %q (%s), want {\"error\": ...%q...}", tt.r.method, tt.r.path, w.Body.String(), w.Header().Get("Content-Type"), tt.want)
			}
			continue
		}
		body := w.Body.String()
		if !strings.Contains(body, `<link rel="stylesheet" href="/static/style.css">`) || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s is not a styled page saying %q:\n%.1500s", tt.r.method, tt.r.path, tt.want, body)
		}
		if tt.r.cookie != "" && !strings.Contains(body, `id="logout"`) {
			t.Errorf("%s %s as admin lacks the navigation", tt.r.method, tt.r.path)
		}
	}
}

func TestStatusCardStates(t *testing.T) {
	type out struct{ Tone, Label string }
	for _, tt := range []struct {
		enabled bool
		mode    string
		kernel  engine.Kernel
		want    out
	}{
		{true, "reject", engine.Kernel{State: "in sync"}, out{"good", "Enforcing"}},
		{true, "redirect", engine.Kernel{State: "in sync"}, out{"good", "Redirecting to the local MTA"}},
		{true, "log", engine.Kernel{State: "in sync"}, out{"warn", "Log only, nothing is blocked"}},
		{false, "reject", engine.Kernel{State: "not enforcing"}, out{"bad", "Disabled"}},
		{true, "reject", engine.Kernel{State: "drift", Problems: []string{"table missing"}}, out{"bad", "Drifted"}},
		{true, "log", engine.Kernel{State: "drift"}, out{"bad", "Drifted"}},
		{true, "reject", engine.Kernel{State: "unknown", Error: "operation not permitted"}, out{"bad", "Not enforcing: error"}},
		{false, "reject", engine.Kernel{State: engine.KernelLeftovers}, out{"bad", "Disabled, rules left behind"}},
		{false, "reject", engine.Kernel{State: engine.KernelPolicyMissing, Fix: "restore it"}, out{"bad", "No stored policy"}},
	} {
		c := stateOf(tt.enabled, tt.mode, tt.kernel)
		if diff := cmp.Diff(tt.want, out{c.Tone, c.Label}); diff != "" {
			t.Errorf("stateOf(%v, %s, %s) (-want +got):\n%s", tt.enabled, tt.mode, tt.kernel.State, diff)
		}
		if c.Tone == "bad" && tt.kernel.State != "not enforcing" && c.Fix == "" {
			t.Errorf("stateOf(%v, %s, %s) says nothing about the fix", tt.enabled, tt.mode, tt.kernel.State)
		}
	}
}

// TestStatusPageShowsTheRealState: log-only mode is not shown as protected;
// a drifted kernel is red with the fix; the daemon's state, its repairs and
// the audit log's last repair are shown; a reseller is told Enable and
// Disable act on the whole server.
func TestStatusPageShowsTheRealState(t *testing.T) {
	repairAt := time.Date(2026, 3, 10, 11, 58, 0, 0, time.UTC)
	e := newTestEnv(t, func(c *Config) {
		c.Daemon = func() DaemonState {
			return DaemonState{Recording: true, Repairs: 3, LastRepair: repairAt, LastProblems: []string{"table inet smtpguard missing"}}
		}
	})
	ctx := context.Background()
	admin := e.login("admin", adminPassword)
	page := func(cookie string) string { return e.do(req{method: "GET", path: "/", cookie: cookie}).Body.String() }
	if _, err := e.eng.Enable(ctx, setup, "fake"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.RecordRepair(ctx, "fake", []string{"chain output missing"}, 1); err != nil {
		t.Fatal(err)
	}
	body := page(admin)
	for _, want := range []string{`tone-good`, `id="state">Enforcing`, "running</span> recording blocked attempts",
		"<b>3</b> since the daemon started", "table inet smtpguard missing", "Last in the audit log", "fake rules restored: chain output missing", "UTC"} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	mode := "log"
	if _, err := e.eng.SetSettings(ctx, setup, engine.Settings{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	body = page(admin)
	if !strings.Contains(body, "tone-warn") || !strings.Contains(body, `id="state">Log only, nothing is blocked`) || strings.Contains(body, "Enforcing") || !strings.Contains(body, `id="who-disabled"`) {
		t.Errorf("log-only status page does not say nothing is blocked:\n%.3000s", body)
	}
	mode = "reject"
	if _, err := e.eng.SetSettings(ctx, setup, engine.Settings{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	e.backend.Tamper(nil) // flushed behind our back, no daemon to repair it
	body = page(admin)
	if !strings.Contains(body, "tone-bad") || !strings.Contains(body, `id="state">Drifted`) || !strings.Contains(body, `id="state-fix"`) {
		t.Errorf("drifted status page is not red with the fix:\n%.3000s", body)
	}
	if _, err := e.eng.Disable(ctx, setup); err != nil {
		t.Fatal(err)
	}
	body = page(admin)
	if !strings.Contains(body, "tone-bad") || !strings.Contains(body, `id="state">Disabled`) || !strings.Contains(body, `id="who-disabled"`) {
		t.Errorf("disabled status page is not red, or Who may connect does not say everyone may:\n%.3000s", body)
	}
	res := e.login("res-yes", resellerPassword)
	body = page(res)
	if !strings.Contains(body, `id="scope"`) || !strings.Contains(body, "affect every user on it") {
		t.Errorf("a reseller's status page does not say Enable acts on every user")
	}
	if strings.Contains(body, "fake rules restored") {
		t.Errorf("a reseller sees the audit log's repairs")
	}
}

// TestSmallThings: the skip link, labelled list buttons, the account
// choice of token creation, time zones.
func TestSmallThings(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	ctx := context.Background()
	if _, err := e.eng.Allow(ctx, setup, "user", "alice"); err != nil {
		t.Fatal(err)
	}
	get := func(path string) string { return e.do(req{method: "GET", path: path, cookie: admin}).Body.String() }
	for path, wants := range map[string][]string{
		"/":        {`<a class="skip" href="#main">`, `<main id="main"`},
		"/allowed": {`aria-label="Remove user alice"`},
		"/accounts": {`aria-label="Delete account res-no"`, `aria-label="Revoke API token ci"`, `aria-label="Grant smtp-restrictions to res-no"`,
			`<select name="account" id="token-account">`, `<option value="res-yes">res-yes (reseller)</option>`},
		"/audit": {" UTC</td>"},
	} {
		body := get(path)
		for _, want := range wants {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s lacks %s", path, want)
			}
		}
	}
}

func TestChartTopOfOneKeepsItsZero(t *testing.T) {
	for _, tt := range []struct {
		counts []int64
		want   []string
	}{
		{[]int64{0, 1, 0}, []string{"0", "1"}},
		{[]int64{0, 0, 0}, []string{"0", "1"}},
		{[]int64{2, 1}, []string{"0", "1", "2"}},
		{[]int64{5}, []string{"0", "5"}},
		{[]int64{7}, []string{"0", "5", "10"}},
	} {
		fr := frameFor(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), time.Duration(len(tt.counts))*time.Hour)
		c := drawChart(fr, tt.counts)
		var got []string
		for _, tk := range c.YTicks {
			got = append(got, tk.Label)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("y ticks for %v (-want +got):\n%s", tt.counts, diff)
		}
	}
}
