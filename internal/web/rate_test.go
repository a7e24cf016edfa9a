package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Rate limits through the API (allowed users, exceptions, the default in
// settings) and on the allowed page, each change one audited operation.
func TestRateLimitsThroughAPIAndPage(t *testing.T) {
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
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"alice","rate":"5/m"}`, 200, "at most 5/m connections"},
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"alice"}`, 200, `"changed": false`}, // keeps the rate
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"4242"}`, 200, `"changed": true`},   // follows the default
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"bob","to":"192.0.2.0/24","rate":"off"}`, 200, "without a rate limit"},
		{"POST", "/api/v1/allowed", `{"kind":"user","name":"alice","rate":"5/week"}`, 400, "invalid rate"},
		{"DELETE", "/api/v1/allowed", `{"kind":"user","name":"alice","rate":"5/m"}`, 400, "rate cannot be given"},
		{"PUT", "/api/v1/settings", `{"rate_limit":"100/h"}`, 200, `"rate_limit": "100/h"`},
		{"PUT", "/api/v1/settings", `{"rate_limit":"fast"}`, 400, "rate-limit: invalid rate"},
	} {
		code, body := api(tt.method, tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s %s = %d %s, want %d containing %q", tt.method, tt.path, tt.body, code, body, tt.code, tt.want)
		}
	}
	got := decode[allowedList](t, e.do(req{method: "GET", path: "/api/v1/allowed", bearer: tok}))
	if diff := cmp.Diff(map[string]string{"alice": "5/m"}, got.UserRates); diff != "" {
		t.Errorf("GET /api/v1/allowed user_rates (-want +got):\n%s", diff)
	}
	if len(got.Exceptions) != 1 || got.Exceptions[0].Rate != "off" {
		t.Errorf("GET /api/v1/allowed exceptions = %+v, want bob's with rate off", got.Exceptions)
	}
	if set := decode[settings](t, e.do(req{method: "GET", path: "/api/v1/settings", bearer: tok})); set.RateLimit != "100/h" {
		t.Errorf("settings rate_limit = %q, want 100/h", set.RateLimit)
	}

	s := e.login("admin", adminPassword)
	w := e.do(req{method: "POST", path: "/allowed", cookie: s, form: url.Values{"kind": {"group"}, "name": {"mailers"}, "rate": {"20/h"}}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("allow group mailers --rate 20/h = %d %s", w.Code, w.Body.String())
	}
	body := e.do(req{method: "GET", path: "/allowed", cookie: s}).Body.String()
	for _, want := range []string{
		`<td>alice <small class="muted rate">at most 5/m</small></td>`,
		`<td>4242 <small class="muted rate">at most 100/h (default)</small></td>`,
		`<td>mailers <small class="muted rate">at most 20/h</small></td>`,
		`<small class="muted rate">no rate limit</small>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("allowed page lacks %s", want)
		}
	}
	w = e.do(req{method: "POST", path: "/allowed", cookie: s, form: url.Values{"kind": {"user"}, "name": {"alice"}, "rate": {"lots"}}})
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "invalid rate") {
		t.Errorf("a bad rate on the page = %d, want 400 saying why", w.Code)
	}
}
