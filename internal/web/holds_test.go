package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

func TestAPIHoldListRelease(t *testing.T) {
	e := newTestEnv(t)
	ctx := t.Context()
	if _, err := e.eng.Enable(ctx, setup, "fake"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Allow(ctx, setup, policy.KindUser, "alice"); err != nil {
		t.Fatal(err)
	}
	tok := e.tokens["ci"]
	w := e.do(req{method: "POST", path: "/api/v1/holds", bearer: tok, json: `{"user": "alice", "for": "2h", "reason": "phishing kit"}`})
	if got := decode[mutationResult](t, w); w.Code != http.StatusOK || !got.Changed {
		t.Fatalf("POST /api/v1/holds = %d %+v", w.Code, got)
	}
	if slices.Contains(e.backend.Installed().UIDs, 1001) {
		t.Error("alice still allowed in the kernel after the API held her")
	}
	w = e.do(req{method: "GET", path: "/api/v1/holds", bearer: tok})
	held := decode[[]engine.HeldUser](t, w)
	if len(held) != 1 || held[0].User != "alice" || held[0].Reason != "phishing kit" || held[0].By != "api:ci" ||
		held[0].Until == nil || held[0].Until.Sub(held[0].Since).Hours() != 2 {
		t.Errorf("GET /api/v1/holds = %+v", held)
	}
	st := decode[struct {
		Held []struct {
			User, Reason string
			UID          uint32
		} `json:"held"`
	}](t, e.do(req{method: "GET", path: "/api/v1/status", bearer: tok}))
	if len(st.Held) != 1 || st.Held[0].User != "alice" || st.Held[0].UID != 1001 {
		t.Errorf("GET /api/v1/status held = %+v", st.Held)
	}
	// Resellers' status never names the server's held users.
	if body := e.do(req{method: "GET", path: "/api/v1/status", bearer: e.tokens["res-bot"]}).Body.String(); strings.Contains(body, "held") {
		t.Errorf("a reseller's status shows holds: %s", body)
	}
	for _, bad := range []struct{ method, body string }{
		{"POST", `{"user": "root"}`},
		{"POST", `{"user": "alice", "for": "soon"}`},
		{"POST", `{"user": ""}`},
		{"POST", `{"name": "alice"}`},
		{"DELETE", `{"user": "alice", "for": "1h"}`},
		{"DELETE", `{"user": "nosuch"}`},
	} {
		if w := e.do(req{method: bad.method, path: "/api/v1/holds", bearer: tok, json: bad.body}); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"error"`) {
			t.Errorf("%s /api/v1/holds %s = %d %s; want 400 with an error", bad.method, bad.body, w.Code, w.Body.String())
		}
	}
	w = e.do(req{method: "DELETE", path: "/api/v1/holds", bearer: tok, json: `{"user": "alice"}`})
	if got := decode[mutationResult](t, w); w.Code != http.StatusOK || !got.Changed {
		t.Fatalf("DELETE /api/v1/holds = %d %+v", w.Code, got)
	}
	if !slices.Contains(e.backend.Installed().UIDs, 1001) {
		t.Error("alice not allowed again after the API released her")
	}
	var ops []string
	for _, r := range e.audit() {
		ops = append(ops, r.Operation+" "+r.Actor)
	}
	if !slices.Contains(ops, "hold api:ci") || !slices.Contains(ops, "release api:ci") {
		t.Errorf("audit = %v, want the API's hold and release by api:ci", ops)
	}
}

func TestUIShowsHoldsAndReleasesAfterConfirming(t *testing.T) {
	e := newTestEnv(t)
	ctx := t.Context()
	e.eng.Enable(ctx, setup, "fake")
	e.eng.Allow(ctx, setup, policy.KindUser, "bob")
	if _, err := e.eng.Hold(ctx, setup, engine.HoldRequest{User: "bob", Reason: "burst of 40 attempts"}); err != nil {
		t.Fatal(err)
	}
	admin := e.login("admin", adminPassword)
	for _, page := range []string{"/", "/allowed"} {
		body := e.do(req{method: "GET", path: page, cookie: admin}).Body.String()
		if !strings.Contains(body, `id="held-users"`) || !strings.Contains(body, "burst of 40 attempts") || !strings.Contains(body, `action="/holds/release"`) {
			t.Errorf("GET %s does not show bob's hold with a Release button:\n%s", page, body)
		}
	}
	reseller := e.login("res-yes", resellerPassword)
	if body := e.do(req{method: "GET", path: "/", cookie: reseller}).Body.String(); strings.Contains(body, "held-users") {
		t.Error("a reseller's status page shows the server's holds")
	}

	// The first post asks; nothing changes.
	w := e.do(req{method: "POST", path: "/holds/release", cookie: admin, form: url.Values{"user": {"1002"}, "back": {"/allowed"}}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `id="confirm"`) {
		t.Fatalf("POST /holds/release without confirm = %d; want the confirmation page:\n%s", w.Code, w.Body.String())
	}
	if held, _ := e.eng.Holds(ctx); len(held) != 1 {
		t.Fatalf("the unconfirmed release released: %+v", held)
	}
	w = e.do(req{method: "POST", path: "/holds/release", cookie: admin, form: url.Values{"user": {"1002"}, "back": {"/allowed"}, "confirm": {"yes"}}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/allowed" {
		t.Fatalf("confirmed release = %d to %q; want 303 to /allowed", w.Code, w.Header().Get("Location"))
	}
	if held, _ := e.eng.Holds(ctx); len(held) != 0 {
		t.Errorf("holds after the confirmed release = %+v", held)
	}
	body := e.do(req{method: "GET", path: "/allowed", cookie: admin}).Body.String()
	if !strings.Contains(body, "user bob (uid 1002) released") || strings.Contains(body, `id="held-users"`) {
		t.Errorf("after the release the page does not say so, or still lists the hold:\n%s", body)
	}
	if recs := e.audit(); len(recs) == 0 || recs[0].Operation != "release" || recs[0].Actor != "web:admin" {
		t.Errorf("last audit record = %+v, want the release by web:admin", recs)
	}
}

func TestEventsPageShowsHeldEventsWithTheReleaseCommand(t *testing.T) {
	e := newTestEnv(t)
	ctx := t.Context()
	e.eng.Enable(ctx, setup, "fake")
	e.eng.Allow(ctx, setup, policy.KindUser, "bob")
	e.eng.Hold(ctx, setup, engine.HoldRequest{User: "bob"})
	now := e.clock.Now()
	if err := e.raw.RecordEvents(ctx, []store.Event{
		{UID: 1002, User: "bob", Action: "held", Count: 12, FirstSeen: now, LastSeen: now},
		{UID: 1002, User: "bob", Family: 4, Address: "192.0.2.99", Port: 25, Action: "blocked", Count: 3, FirstSeen: now, LastSeen: now},
	}); err != nil {
		t.Fatal(err)
	}
	admin := e.login("admin", adminPassword)
	body := e.do(req{method: "GET", path: "/events", cookie: admin}).Body.String()
	if !strings.Contains(body, "smtpguard release user bob") {
		t.Errorf("the held event does not show the release command:\n%s", body)
	}
	if strings.Contains(body, "allowed now") || strings.Contains(body, `name="to" value=""`) {
		t.Errorf("a held user's events show him as allowed, or offer to allow an empty destination:\n%s", body)
	}
	if w := e.do(req{method: "GET", path: "/events?action=held", cookie: admin}); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "smtpguard release user bob") {
		t.Errorf("GET /events?action=held = %d", w.Code)
	}
}
