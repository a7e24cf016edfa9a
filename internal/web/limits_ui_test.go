package web

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// settingsForm is the settings page's form as a browser posts it.
func settingsForm(rate, holdAfter, holdFor string) url.Values {
	return url.Values{"ports": {"25, 465, 587, 2525"}, "mode": {"reject"}, "allow_local": {"on"},
		"rate_limit": {rate}, "hold_after": {holdAfter}, "hold_for": {holdFor}}
}

// TestSettingsPageSavesLimitsAndHolds: the page shows the default rate
// limit and the hold settings, saves them with the rest in one audited
// change, and answers bad input with the CLI's error and the form, changing
// nothing.
func TestSettingsPageSavesLimitsAndHolds(t *testing.T) {
	e := newTestEnv(t)
	ctx := t.Context()
	if _, err := e.eng.Enable(ctx, setup, "fake"); err != nil {
		t.Fatal(err)
	}
	admin := e.login("admin", adminPassword)
	page := e.do(req{method: "GET", path: "/settings", cookie: admin}).Body.String()
	for _, want := range []string{`name="rate_limit" value="off"`, `name="hold_after" value="off"`, `name="hold_for" value="1h"`} {
		if !strings.Contains(page, want) {
			t.Errorf("GET /settings lacks %s", want)
		}
	}

	type state struct {
		Policy policy.Policy
		Holds  store.HoldSettings
		Audit  int
	}
	snap := func() state {
		t.Helper()
		p, _, err := e.st.Policy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := e.eng.HoldSettings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return state{p, hs, len(e.audit())}
	}
	before := snap()
	for _, tc := range []struct {
		name             string
		form             url.Values
		wantErr, wantVal string
	}{
		{"rate", settingsForm("lots", "off", "1h"), `rate-limit: invalid rate &#34;lots&#34;: write N/PERIOD with PERIOD s, m, h or d (e.g. 100/h), or off`, `value="lots"`},
		{"hold-after period", settingsForm("off", "5/x", "1h"), `hold-after: invalid rate &#34;5/x&#34;: the period must be s, m, h or d (e.g. 100/h)`, `value="5/x"`},
		{"hold-after count", settingsForm("off", "2000/m", "1h"), `hold-after 2000/m: at most 1000 attempts`, `value="2000/m"`},
		{"hold-for", settingsForm("off", "10/m", "soon"), `hold-for: invalid duration &#34;soon&#34;: write e.g. 30m, 2h or 1d, or 0 for until released`, `value="soon"`},
		{"good holds, bad ports", func() url.Values { f := settingsForm("100/h", "10/m", "0"); f.Set("ports", "25,x"); return f }(), "ports: ", `value="25,x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(req{method: "POST", path: "/settings", cookie: admin, form: tc.form})
			body := w.Body.String()
			if w.Code != http.StatusBadRequest || !strings.Contains(body, tc.wantErr) || !strings.Contains(body, tc.wantVal) || !strings.Contains(body, `id="settings-form"`) {
				t.Errorf("POST /settings = %d; want 400, the form with %s and the error %q:\n%s", w.Code, tc.wantVal, tc.wantErr, body)
			}
			if diff := cmp.Diff(before, snap()); diff != "" {
				t.Errorf("bad input changed state (-before +after):\n%s", diff)
			}
		})
	}

	w := e.do(req{method: "POST", path: "/settings", cookie: admin, form: settingsForm("100/h", "10/m", "0")})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/settings" {
		t.Fatalf("POST /settings = %d to %q; want 303 to /settings", w.Code, w.Header().Get("Location"))
	}
	after := snap()
	if after.Policy.RateLimit != (policy.Rate{Count: 100, Period: time.Hour}) {
		t.Errorf("rate limit after save = %v, want 100/h", after.Policy.RateLimit)
	}
	if diff := cmp.Diff(store.HoldSettings{After: policy.Rate{Count: 10, Period: time.Minute}}, after.Holds); diff != "" {
		t.Errorf("hold settings after save (-want +got):\n%s", diff)
	}
	recs := e.audit()
	if after.Audit != before.Audit+1 || recs[0].Operation != "set" || recs[0].Actor != "web:admin" ||
		recs[0].Detail != "ports 25,465,587,2525 mode reject allow-local on rate-limit 100/h hold-after 10/m hold-for 0" {
		t.Errorf("audit after one save: %d new records, latest %+v; want one set by web:admin naming every field", after.Audit-before.Audit, recs[0])
	}
	page = e.do(req{method: "GET", path: "/settings", cookie: admin}).Body.String()
	for _, want := range []string{"default rate limit set to 100/h", "automatic hold after 10 refused or rate-limited attempts in 1m", "holds last until released",
		`name="rate_limit" value="100/h"`, `name="hold_after" value="10/m"`, `name="hold_for" value="0"`} {
		if !strings.Contains(page, want) {
			t.Errorf("after the save GET /settings lacks %q", want)
		}
	}

	// A form without the new fields (a page loaded before an upgrade) keeps them.
	old := settingsForm("", "", "")
	for _, k := range []string{"rate_limit", "hold_after", "hold_for"} {
		old.Del(k)
	}
	old.Set("ports", "25,587")
	if w := e.do(req{method: "POST", path: "/settings", cookie: admin, form: old}); w.Code != http.StatusSeeOther {
		t.Fatalf("POST /settings without the limit fields = %d", w.Code)
	}
	if got := snap(); got.Policy.RateLimit != after.Policy.RateLimit || got.Holds != after.Holds {
		t.Errorf("a form without the limit fields changed them: %v %+v", got.Policy.RateLimit, got.Holds)
	}
}

// TestPutSettingsHoldFields: the API's settings carry hold_after and
// hold_for, and a PUT with a bad one changes nothing.
func TestPutSettingsHoldFields(t *testing.T) {
	e := newTestEnv(t)
	tok := e.tokens["ci"]
	get := func() settings {
		return decode[settings](t, e.do(req{method: "GET", path: "/api/v1/settings", bearer: tok}))
	}
	if got := get(); got.HoldAfter != "off" || got.HoldFor != "1h" {
		t.Errorf("GET /api/v1/settings hold = %q %q, want off 1h", got.HoldAfter, got.HoldFor)
	}
	audited := len(e.audit())
	for _, bad := range []struct{ body, err string }{
		{`{"ports":[25],"hold_after":"5/x"}`, "hold-after: invalid rate"},
		{`{"hold_after":"1001/m"}`, "at most 1000 attempts"},
		{`{"mode":"log","hold_for":"-1h"}`, "hold-for: invalid duration"},
		{`{"hold_for":5}`, ""},
	} {
		w := e.do(req{method: "PUT", path: "/api/v1/settings", bearer: tok, json: bad.body})
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), bad.err) {
			t.Errorf("PUT %s = %d %s; want 400 with %q", bad.body, w.Code, w.Body.String(), bad.err)
		}
	}
	if got := get(); got.HoldAfter != "off" || got.HoldFor != "1h" || !slices.Equal(got.Ports, []uint16{25, 465, 587, 2525}) || got.Mode != "reject" {
		t.Errorf("rejected PUTs changed the settings: %+v", got)
	}
	if n := len(e.audit()); n != audited {
		t.Errorf("rejected PUTs left %d audit records", n-audited)
	}
	w := e.do(req{method: "PUT", path: "/api/v1/settings", bearer: tok, json: `{"hold_after":"20/h","hold_for":"1d"}`})
	got := decode[struct {
		Changed bool `json:"changed"`
		settings
	}](t, w)
	if w.Code != http.StatusOK || !got.Changed || got.HoldAfter != "20/h" || got.HoldFor != "1d" {
		t.Errorf("PUT hold settings = %d %+v", w.Code, got)
	}
	if recs := e.audit(); len(recs) != audited+1 || recs[0].Detail != "hold-after 20/h hold-for 1d" || recs[0].Actor != "api:ci" {
		t.Errorf("audit after the PUT = %+v", recs[:len(recs)-audited])
	}
	if hs, _ := e.eng.HoldSettings(context.Background()); hs.For != 24*time.Hour {
		t.Errorf("stored hold-for = %v, want 24h", hs.For)
	}
}

// TestAllowedPageHoldsAfterConfirming: the allowed page's hold form asks
// first, then holds the user (suspending its allowance in the kernel) with
// the length and reason given, audited as the admin's.
func TestAllowedPageHoldsAfterConfirming(t *testing.T) {
	e := newTestEnv(t)
	ctx := t.Context()
	e.eng.Enable(ctx, setup, "fake")
	if _, err := e.eng.Allow(ctx, setup, policy.KindUser, "alice"); err != nil {
		t.Fatal(err)
	}
	admin := e.login("admin", adminPassword)
	page := e.do(req{method: "GET", path: "/allowed", cookie: admin}).Body.String()
	if !strings.Contains(page, `id="hold-form"`) || !strings.Contains(page, `action="/holds"`) || !strings.Contains(page, `placeholder="1h"`) {
		t.Fatalf("GET /allowed has no hold form with the hold-for setting:\n%s", page)
	}
	audited := len(e.audit())
	for _, tc := range []struct {
		name string
		form url.Values
		want string
	}{
		{"no user", url.Values{"user": {""}, "for": {"2h"}}, "enter the user&#39;s name or number to hold"},
		{"unknown user", url.Values{"user": {"nosuch"}}, "nosuch"},
		{"root", url.Values{"user": {"root"}}, "root (uid 0) cannot be held"},
		{"bad duration", url.Values{"user": {"alice"}, "for": {"soon"}, "reason": {"phish"}}, `for: invalid duration &#34;soon&#34;: write e.g. 30m, 2h or 1d, or 0 for until released`},
		{"root confirmed", url.Values{"user": {"root"}, "confirm": {"yes"}}, "root (uid 0) cannot be held"},
		{"too long a reason", url.Values{"user": {"alice"}, "reason": {strings.Repeat("x", 501)}, "confirm": {"yes"}}, "at most 500 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(req{method: "POST", path: "/holds", cookie: admin, form: tc.form})
			body := w.Body.String()
			if w.Code != http.StatusBadRequest || !strings.Contains(body, tc.want) || !strings.Contains(body, `id="hold-form"`) {
				t.Errorf("POST /holds %v = %d; want 400 with the form and %q:\n%s", tc.form, w.Code, tc.want, body)
			}
			if tc.form.Get("for") == "soon" && !strings.Contains(body, `name="for" id="hold-for" value="soon"`) {
				t.Errorf("the form does not keep what was typed")
			}
			if held, _ := e.eng.Holds(ctx); len(held) != 0 {
				t.Errorf("bad input held someone: %+v", held)
			}
		})
	}
	if n := len(e.audit()); n != audited {
		t.Errorf("bad hold input left %d audit records", n-audited)
	}

	form := url.Values{"user": {"alice"}, "for": {"2h"}, "reason": {"phishing kit in wp-content"}}
	w := e.do(req{method: "POST", path: "/holds", cookie: admin, form: form})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `id="confirm"`) || !strings.Contains(w.Body.String(), "Put user alice (uid 1001) on hold for 2h?") {
		t.Fatalf("POST /holds without confirm = %d; want the confirmation page naming alice and 2h:\n%s", w.Code, w.Body.String())
	}
	if held, _ := e.eng.Holds(ctx); len(held) != 0 || !slices.Contains(e.backend.Installed().UIDs, 1001) {
		t.Fatalf("the unconfirmed hold held: %+v", held)
	}
	form.Set("confirm", "yes")
	w = e.do(req{method: "POST", path: "/holds", cookie: admin, form: form})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/allowed" {
		t.Fatalf("confirmed hold = %d to %q; want 303 to /allowed", w.Code, w.Header().Get("Location"))
	}
	held, _ := e.eng.Holds(ctx)
	if len(held) != 1 || held[0].User != "alice" || held[0].Reason != "phishing kit in wp-content" || held[0].By != "web:admin" ||
		held[0].Until == nil || held[0].Until.Sub(held[0].Since) != 2*time.Hour {
		t.Fatalf("holds after the confirmed hold = %+v", held)
	}
	if slices.Contains(e.backend.Installed().UIDs, 1001) {
		t.Error("alice still allowed in the kernel while held")
	}
	if recs := e.audit(); len(recs) != audited+1 || recs[0].Operation != "hold" || recs[0].Actor != "web:admin" {
		t.Errorf("audit after the hold = %+v", recs[:len(recs)-audited])
	}
	page = e.do(req{method: "GET", path: "/allowed", cookie: admin}).Body.String()
	if !strings.Contains(page, "user alice (uid 1001) held until") || !strings.Contains(page, `id="held-users"`) {
		t.Errorf("after the hold the page does not say so or list it:\n%s", page)
	}

	// Until released, and the hold-for setting named when no length is given.
	if w := e.do(req{method: "POST", path: "/holds", cookie: admin, form: url.Values{"user": {"bob"}}}); !strings.Contains(w.Body.String(), "on hold for 1h (the hold-for setting)?") {
		t.Errorf("a hold without a length does not name the hold-for setting:\n%s", w.Body.String())
	}
	if w := e.do(req{method: "POST", path: "/holds", cookie: admin, form: url.Values{"user": {"bob"}, "for": {"0"}}}); !strings.Contains(w.Body.String(), "on hold until released?") {
		t.Errorf("a hold for 0 does not say until released:\n%s", w.Body.String())
	}
	// A reseller cannot hold.
	reseller := e.login("res-yes", resellerPassword)
	if w := e.do(req{method: "POST", path: "/holds", cookie: reseller, form: url.Values{"user": {"bob"}, "confirm": {"yes"}}}); w.Code != http.StatusForbidden {
		t.Errorf("a reseller's hold = %d, want 403", w.Code)
	}
}
