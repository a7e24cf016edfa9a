package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/store"
)

// The requesters of the authorization matrix, in column order.
var matrixWho = []string{"anonymous", "reseller", "reseller+priv", "admin", "admin token", "reseller token"}

// matrixRow is one route's sample request and the exact status each
// requester gets. The sample request is valid, so a requester with the right
// gets the route's success code.
type matrixRow struct {
	form url.Values
	json string
	want [6]int
}

const (
	ok    = http.StatusOK
	see   = http.StatusSeeOther // UI success after a change, or the way to /login
	unau  = http.StatusUnauthorized
	forb  = http.StatusForbidden
	wrong = http.StatusUnauthorized // POST /login with a wrong password
	conf  = http.StatusConflict
)

// Access patterns shared by many rows.
var (
	uiSMTPGet  = [6]int{see, forb, ok, ok, ok, ok}
	uiSMTPPost = [6]int{see, forb, see, see, see, see}
	uiAdminGet = [6]int{see, forb, forb, ok, ok, forb}
	uiAdminPo  = [6]int{see, forb, forb, see, see, forb}
	apiSMTP    = [6]int{unau, forb, ok, ok, ok, ok}
	apiAdmin   = [6]int{unau, forb, forb, ok, ok, forb}
)

// matrix has one row per registered route. A route without a row fails
// TestAuthorizationMatrix, so nobody can add an endpoint without deciding
// who may use it.
func matrix() map[string]matrixRow {
	// The changes that ask first, confirmed (confirm_test.go covers the
	// question itself).
	confirmYes := url.Values{"confirm": {"yes"}}
	newPassword := url.Values{"password": {"another-password-1"}, "password2": {"another-password-1"}}
	return map[string]matrixRow{
		"GET /login":     {want: [6]int{ok, see, see, see, see, see}},
		"POST /login":    {form: url.Values{"username": {"admin"}, "password": {"wrong password"}}, want: [6]int{wrong, wrong, wrong, wrong, wrong, wrong}},
		"POST /logout":   {want: [6]int{see, see, see, see, see, see}},
		"GET /static/":   {want: [6]int{ok, ok, ok, ok, ok, ok}},
		"GET /{$}":       {want: uiSMTPGet},
		"POST /enable":   {want: uiSMTPPost},
		"POST /disable":  {form: confirmYes, want: uiSMTPPost},
		"GET /events":    {want: uiSMTPGet},
		"GET /allowed":   {want: uiAdminGet},
		"POST /allowed":  {form: url.Values{"kind": {"user"}, "name": {"bob"}}, want: uiAdminPo},
		"GET /settings":  {want: uiAdminGet},
		"POST /settings": {form: url.Values{"ports": {"25,587"}, "mode": {"reject"}, "allow_local": {"on"}}, want: uiAdminPo},
		"GET /audit":     {want: uiAdminGet},
		"GET /accounts":  {want: uiAdminGet},
		// The test host has no MTA: an admin reaches the handler, which
		// answers 409 (nothing to manage).
		"GET /mta":                       {want: uiAdminGet},
		"POST /mta":                      {form: url.Values{"max_connections": {"100"}}, want: [6]int{see, forb, forb, conf, conf, forb}},
		"POST /accounts":                 {form: url.Values{"name": {"newbie"}, "role": {"reseller"}, "password": {"newbie-password-1"}, "password2": {"newbie-password-1"}}, want: uiAdminPo},
		"POST /allowed/remove":           {form: url.Values{"kind": {"user"}, "name": {"bob"}, "confirm": {"yes"}}, want: uiAdminPo},
		"POST /holds/release":            {form: url.Values{"user": {"bob"}, "confirm": {"yes"}}, want: uiAdminPo},
		"POST /holds":                    {form: url.Values{"user": {"bob"}, "for": {"1h"}, "confirm": {"yes"}}, want: uiAdminPo},
		"POST /accounts/{name}/delete":   {form: confirmYes, want: uiAdminPo},
		"POST /accounts/{name}/password": {form: newPassword, want: uiAdminPo},
		"POST /accounts/{name}/grant":    {form: url.Values{"privilege": {store.PrivSMTPRestrictions}}, want: uiAdminPo},
		"POST /accounts/{name}/revoke":   {form: url.Values{"privilege": {store.PrivSMTPRestrictions}}, want: uiAdminPo},
		"POST /accounts/{name}/users":    {form: url.Values{"users": {"bob carol"}}, want: uiAdminPo},
		"POST /tokens":                   {form: url.Values{"name": {"new-token"}, "role": {"admin"}}, want: [6]int{see, forb, forb, ok, ok, forb}},
		"POST /tokens/{name}/revoke":     {form: confirmYes, want: uiAdminPo},

		"GET /api/v1/status":     {want: apiSMTP},
		"POST /api/v1/enable":    {want: apiSMTP},
		"POST /api/v1/disable":   {want: apiSMTP},
		"GET /api/v1/events":     {want: apiSMTP},
		"GET /api/v1/allowed":    {want: apiAdmin},
		"POST /api/v1/allowed":   {json: `{"kind": "user", "name": "bob"}`, want: apiAdmin},
		"DELETE /api/v1/allowed": {json: `{"kind": "user", "name": "bob"}`, want: apiAdmin},
		"GET /api/v1/holds":      {want: apiAdmin},
		"POST /api/v1/holds":     {json: `{"user": "bob", "for": "1h"}`, want: apiAdmin},
		"DELETE /api/v1/holds":   {json: `{"user": "bob"}`, want: apiAdmin},
		"GET /api/v1/settings":   {want: apiAdmin},
		"PUT /api/v1/settings":   {json: `{"ports": [25, 587], "mode": "log", "allow_local": false}`, want: apiAdmin},
		"GET /api/v1/audit":      {want: apiAdmin},
		"GET /api/v1/mta":        {want: apiAdmin},
		"PUT /api/v1/mta":        {json: `{"max_connections": 100}`, want: [6]int{unau, forb, forb, conf, conf, forb}},

		// Resellers export only their owned users' attempts (TestEventsExportEveryPage).
		"GET /api/v1/events/export": {want: apiSMTP},
	}
}

// samplePath turns a ServeMux pattern into a concrete path: {name} is the
// "victim" account and token every environment has.
func samplePath(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.ReplaceAll(path, "{$}", "")
	path = strings.ReplaceAll(path, "{name}", "victim")
	if strings.HasSuffix(path, "/static/") {
		path += "style.css"
	}
	return method, path
}

func TestAuthorizationMatrix(t *testing.T) {
	probe := newTestEnv(t)
	rows := matrix()
	registered := map[string]bool{}
	for _, rt := range probe.srv.routes {
		registered[rt.pattern] = true
		if _, ok := rows[rt.pattern]; !ok {
			t.Errorf("route %q (access %s) has no row in the authorization matrix: add one", rt.pattern, rt.access)
		}
	}
	for pattern := range rows {
		if !registered[pattern] {
			t.Errorf("matrix row %q matches no registered route: remove it", pattern)
		}
	}
	for _, rt := range probe.srv.routes {
		row, ok := rows[rt.pattern]
		if !ok {
			continue
		}
		for i, who := range matrixWho {
			t.Run(rt.pattern+"/"+who, func(t *testing.T) {
				t.Parallel()
				e := newTestEnv(t)
				e.addAccount("victim", store.RoleReseller, resellerPassword)
				e.addToken(store.Token{Name: "victim", Role: store.RoleAdmin})
				method, path := samplePath(rt.pattern)
				r := req{method: method, path: path, form: row.form, json: row.json}
				switch who {
				case "reseller":
					r.cookie = e.login("res-no", resellerPassword)
				case "reseller+priv":
					r.cookie = e.login("res-yes", resellerPassword)
				case "admin":
					r.cookie = e.login("admin", adminPassword)
				case "admin token":
					r.bearer = e.tokens["ci"]
				case "reseller token":
					r.bearer = e.tokens["res-bot"]
				}
				if recs := e.audit(); len(recs) > 0 {
					e.seeded = recs[0].ID // after the set-up (e.login skips its own record)
				}
				if method == "POST" && r.form == nil && r.json == "" && !rt.api {
					r.form = url.Values{}
				}
				w := e.do(r)
				if w.Code != row.want[i] {
					t.Errorf("%s %s as %s = %d, want %d; body:\n%.400s", method, path, who, w.Code, row.want[i], w.Body.String())
				}
				if rt.api && w.Code >= 400 {
					if body := decode[map[string]string](t, w); body["error"] == "" {
						t.Errorf("error answer without an \"error\" message: %v", body)
					}
				}
				if w.Code == see && !rt.api && who == "anonymous" && rt.access != public {
					wantLoc := "/login"
					if method == "GET" && path != "/" {
						wantLoc = "/login?next=" + url.QueryEscape(path) // back there after signing in
					}
					if loc := w.Header().Get("Location"); loc != wantLoc {
						t.Errorf("anonymous redirected to %q, want %s", loc, wantLoc)
					}
				}
				// A refused request must change nothing.
				if w.Code == forb || w.Code == unau {
					if calls := e.backend.Calls(); containsAny(calls, "apply", "remove") {
						t.Errorf("refused request reached the kernel: %v", calls)
					}
					for _, rec := range e.audit() {
						// A failed sign-in is recorded on purpose, and only that.
						if rt.pattern != "POST /login" || rec.Operation != "sign-in" || rec.Actor != "anonymous" {
							t.Errorf("refused request left audit record %+v", rec)
						}
					}
				}
			})
		}
	}
}

func containsAny(list []string, want ...string) bool {
	for _, l := range list {
		for _, w := range want {
			if l == w {
				return true
			}
		}
	}
	return false
}

func TestUnknownRoutes(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	for _, r := range []req{
		{method: "GET", path: "/nope", cookie: admin},
		{method: "GET", path: "/api/v1/nope", bearer: e.tokens["ci"]},
		{method: "GET", path: "/static/nope.css"},
	} {
		if w := e.do(r); w.Code != http.StatusNotFound {
			t.Errorf("%s %s = %d, want 404", r.method, r.path, w.Code)
		}
	}
	if w := e.do(req{method: "PATCH", path: "/api/v1/settings", bearer: e.tokens["ci"]}); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("PATCH /api/v1/settings = %d, want 405", w.Code)
	}
}
