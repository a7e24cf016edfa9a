package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPutSettingsIsOneChange: a PUT of ports, mode and allow-local is one
// engine operation: one audit record for all three, and a bad value in any
// field changes nothing at all.
func TestPutSettingsIsOneChange(t *testing.T) {
	e := newTestEnv(t)
	tok := e.tokens["ci"]
	if w := e.do(req{method: "POST", path: "/api/v1/enable", bearer: tok}); w.Code != http.StatusOK {
		t.Fatalf("enable = %d %s", w.Code, w.Body.String())
	}
	put := func(body string) *struct{ code int } {
		w := e.do(req{method: "PUT", path: "/api/v1/settings", bearer: tok, json: body})
		return &struct{ code int }{w.Code}
	}
	before, _, err := e.st.Policy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	audited, calls := len(e.audit()), len(e.backend.Calls())
	for _, bad := range []string{
		`{"ports":[0],"mode":"log","allow_local":false}`,
		`{"ports":[25,2525],"mode":"bogus","allow_local":false}`,
		`{"ports":[25,2525],"mode":"log","allow_local":"maybe"}`,
		`{"ports":[25,70000],"mode":"log"}`,
	} {
		if r := put(bad); r.code != http.StatusBadRequest {
			t.Errorf("PUT %s = %d, want 400", bad, r.code)
		}
	}
	after, _, _ := e.st.Policy(context.Background())
	if !after.Equal(before) {
		t.Errorf("a rejected PUT changed the policy: %+v, was %+v", after, before)
	}
	if n := len(e.audit()); n != audited {
		t.Errorf("rejected PUTs left %d audit records", n-audited)
	}
	if got := e.backend.Calls()[calls:]; len(got) != 0 {
		t.Errorf("rejected PUTs reached the kernel: %v", got)
	}

	if r := put(`{"ports":[25,2525],"mode":"log","allow_local":false}`); r.code != http.StatusOK {
		t.Fatalf("valid PUT = %d", r.code)
	}
	recs := e.audit()
	if len(recs) != audited+1 {
		t.Fatalf("a PUT of three settings made %d audit records, want 1: %+v", len(recs)-audited, recs[:len(recs)-audited])
	}
	if recs[0].Operation != "set" || recs[0].Detail != "ports 25,2525 mode log allow-local off" {
		t.Errorf("audit record = %q %q, want set with all three", recs[0].Operation, recs[0].Detail)
	}
	if got := e.backend.Calls()[calls:]; !cmp.Equal(got, []string{"apply"}) {
		t.Errorf("kernel calls = %v, want one apply for the three settings", got)
	}
	p, _, _ := e.st.Policy(context.Background())
	if !cmp.Equal(p.Ports, []uint16{25, 2525}) || p.Mode != "log" || p.AllowLocal {
		t.Errorf("policy after PUT = %+v", p)
	}
	// The same again changes nothing and records nothing.
	if r := put(`{"ports":[2525,25],"mode":"log","allow_local":false}`); r.code != http.StatusOK {
		t.Fatalf("repeated PUT = %d", r.code)
	}
	if n := len(e.audit()); n != audited+1 {
		t.Errorf("an unchanged PUT was audited (%d records)", n-audited-1)
	}
}

// TestGrantThatChangesNothingIsNotAudited: the web UI used to audit a grant
// of a privilege already held.
func TestGrantThatChangesNothingIsNotAudited(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	for range 2 {
		w := e.do(req{method: "POST", path: "/accounts/res-yes/grant", cookie: admin, form: url.Values{"privilege": {"smtp-restrictions"}}})
		if w.Code != http.StatusSeeOther {
			t.Fatalf("grant = %d %s", w.Code, w.Body.String())
		}
	}
	if recs := e.audit(); len(recs) != 0 {
		t.Errorf("a grant of a privilege held already was audited: %+v", recs)
	}
	page := e.do(req{method: "GET", path: "/accounts", cookie: admin}).Body.String()
	if !strings.Contains(page, "nothing changed") {
		t.Errorf("the accounts page does not say the grant changed nothing")
	}
}
