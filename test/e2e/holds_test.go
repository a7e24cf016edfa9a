//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce/bpf"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

type heldUser struct {
	User   string     `json:"user"`
	UID    uint32     `json:"uid"`
	Since  time.Time  `json:"since"`
	Until  *time.Time `json:"until"`
	Reason string     `json:"reason"`
}

func (w *world) held() []heldUser {
	w.t.Helper()
	var st struct {
		Held []heldUser `json:"held"`
	}
	out := w.sgOK("status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Held == nil {
		w.t.Fatalf("status --json has no held list (%v): %s", err, out)
	}
	return st.Held
}

// heldNames is who is on hold, as status --json says.
func (w *world) heldNames() string {
	var names []string
	for _, h := range w.held() {
		names = append(names, h.User)
	}
	return strings.Join(names, ",")
}

// burst makes n refused attempts of u to a destination no exception covers.
func (w *world) burst(u *testutil.User, n int) {
	w.t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = testutil.HostPort("192.0.2.3", 25)
	}
	for _, r := range w.connect(u, addrs...) {
		if r.OK {
			w.t.Fatalf("%s reached %s, want refused", u.Name, r.Addr)
		}
	}
}

// refusedTo3 sums the recorded refused attempts of the plain user to
// 192.0.2.3, where burst sends them.
func (w *world) refusedTo3() int {
	w.t.Helper()
	var evs []event
	if err := json.Unmarshal([]byte(w.sgOK("events", "--json")), &evs); err != nil {
		w.t.Fatalf("events --json: %v", err)
	}
	n := 0
	for _, e := range evs {
		if e.UID == w.plain.UID && e.Destination == "192.0.2.3" && e.Action == "blocked" {
			n += e.Count
		}
	}
	return n
}

// loseKernelState removes every rule smtpguard put in the kernel, as a
// reboot does: nft's table; under bpf the links (detached) and every pin.
func (w *world) loseKernelState() {
	w.t.Helper()
	if !w.isBPF() {
		w.client.Exec(w.t, "nft", "delete", "table", "inet", "smtpguard")
		return
	}
	w.tamper()
	if err := os.RemoveAll(filepath.Join(w.bpffs, bpf.PinDirName)); err != nil {
		w.t.Fatal(err)
	}
}

// TestPrivilegedAutomaticHold, for every backend: a user allowed one relay
// bursts refused attempts elsewhere; the daemon holds him, which suspends
// his exception at once, and a release restores it. The hold outlives a
// daemon restart on a kernel that lost its rules (a reboot), and the third
// hold in a day lasts until released.
func TestPrivilegedAutomaticHold(t *testing.T) {
	forEachBackend(t, testAutomaticHold)
}

func testAutomaticHold(t *testing.T, w *world) {
	relay := testutil.HostPort("192.0.2.2", 25)
	w.enable()
	w.sgOK("allow", "user", w.plain.Name, "--to", "192.0.2.2", "--port", "25")
	w.sgOK("allow", "group", w.group)
	w.sgOK("set", "hold-after", "5/m")
	w.sgOK("set", "hold-for", "3s")
	d := w.startDaemon(t, "--own-table=false")
	w.expectReach(&w.plain, relay)

	// The daemon takes attempts reported within 1 s of a hold's end as the
	// hold's own refusals (the kernel hands them over in batches), so each
	// new burst waits for that to pass after the previous hold's end.
	var lastEnd time.Time
	pastLag := func() {
		if wait := time.Until(lastEnd.Add(1200 * time.Millisecond)); wait > 0 {
			time.Sleep(wait)
		}
	}
	endOf := func() time.Time {
		if h := w.held(); len(h) == 1 && h[0].Until != nil {
			return *h[0].Until
		}
		return time.Now()
	}
	holdOnce := func(t *testing.T, n int) {
		t.Helper()
		pastLag()
		w.burst(&w.plain, 5)
		w.waitUntil(t, fmt.Sprintf("hold %d after the burst", n), 5*time.Second, func() bool { return w.heldNames() == w.plain.Name })
		w.expectBlocked(&w.plain, relay)
		w.expectReach(&w.primary, relay) // the others keep their allowance
	}

	t.Run("a burst holds the user and suspends his exception at once; the hold ends by itself", func(t *testing.T) {
		w.t = t
		holdOnce(t, 1)
		h := w.held()[0]
		if h.UID != w.plain.UID || h.Until == nil || h.Until.Sub(h.Since) != 3*time.Second || !strings.Contains(h.Reason, "5 refused or rate-limited attempts") {
			t.Errorf("held = %+v, want %s for 3s, naming the attempts", h, w.plain.Name)
		}
		var evs []event
		json.Unmarshal([]byte(w.sgOK("events", "--json")), &evs)
		found := false
		for _, e := range evs {
			found = found || (e.Action == "held" && e.UID == w.plain.UID && e.Count == 5)
		}
		if !found {
			t.Errorf("events --json has no held event for %s: %+v", w.plain.Name, evs)
		}
		m, err := w.metrics()
		if err != nil || m["smtpguard_held_users"] != 1 {
			t.Errorf("smtpguard_held_users = %v (%v), want 1", m["smtpguard_held_users"], err)
		}
		lastEnd = endOf()
		w.waitUntil(t, "the hold to expire", 8*time.Second, func() bool { return w.heldNames() == "" })
		w.waitUntil(t, "the exception back after the expiry", 2*time.Second, func() bool {
			return w.connect(&w.plain, relay)[0].OK
		})
	})
	t.Run("the third hold in a day lasts until released, survives a restart, and release restores the exception", func(t *testing.T) {
		w.t = t
		holdOnce(t, 2)
		lastEnd = endOf()
		w.waitUntil(t, "the second hold to expire", 8*time.Second, func() bool { return w.heldNames() == "" })
		holdOnce(t, 3)
		if h := w.held()[0]; h.Until != nil || !strings.Contains(h.Reason, "held 3 times") {
			t.Fatalf("third hold = %+v, want until released (escalated)", h)
		}
		d.Kill()
		w.loseKernelState()
		w.expectReach(&w.plain, relay) // nothing enforces now: the restart must
		d = w.startDaemon(t, "--own-table=false")
		w.waitUntil(t, "the daemon converges after the restart", 5*time.Second, func() bool { return w.status().Kernel.State == "in sync" })
		// Let the 3s of hold-for pass (a timed hold would have ended by
		// now): proving a negative takes the time it is about.
		if wait := time.Until(w.held()[0].Since.Add(3500 * time.Millisecond)); wait > 0 {
			time.Sleep(wait)
		}
		if w.heldNames() != w.plain.Name {
			t.Fatalf("after a restart held = %q, want %s", w.heldNames(), w.plain.Name)
		}
		w.expectBlocked(&w.plain, relay)
		w.expectReach(&w.primary, relay)

		// Released (in this subtest: the restarted daemon lives as long
		// as it), his exception is back, and neither the burst nor the
		// refusals while held (the last one just above, reported after
		// the release) count again.
		if out := w.sgOK("release", "user", w.plain.Name); !strings.Contains(out, "released") {
			t.Errorf("release printed %q", out)
		}
		lastEnd = time.Now()
		w.expectReach(&w.plain, relay)
		if names := w.heldNames(); names != "" {
			t.Errorf("held after release = %q", names)
		}
		pastLag()
		// Four refused attempts after the release stay below 5/m.
		before := w.refusedTo3()
		w.burst(&w.plain, 4)
		w.waitUntil(t, "the four attempts recorded", 3*time.Second, func() bool { return w.refusedTo3() == before+4 })
		if names := w.heldNames(); names != "" {
			t.Errorf("held again by the released burst: %q", names)
		}
		w.expectReach(&w.plain, relay)
		// The fifth reaches the threshold: counting goes on after a release.
		w.burst(&w.plain, 1)
		w.waitUntil(t, "a new hold at the fifth attempt", 5*time.Second, func() bool { return w.heldNames() == w.plain.Name })
	})
}

// TestPrivilegedManualHold, for every backend: an administrator holds and
// releases a user through the CLI and through the API; root and the MTA's
// accounts cannot be held.
func TestPrivilegedManualHold(t *testing.T) {
	forEachBackend(t, testManualHold)
}

func testManualHold(t *testing.T, w *world) {
	relay := testutil.HostPort("192.0.2.2", 587)
	const held = "192.0.2.3:2600" // a listener that keeps its sessions open
	testutil.HoldTCP(t, w.server, held)
	w.sgOK("set", "ports", "25,465,587,2600")
	w.enable()
	w.sgOK("allow", "group", w.group)

	t.Run("cli", func(t *testing.T) {
		w.t = t
		w.expectReach(&w.primary, relay)
		// A hold ends the sessions the user's allowance let through, at once.
		heldSession := testutil.OpenSession(t, w.client, w.primary.UID, held)
		otherSession := testutil.OpenSession(t, w.client, w.supp.UID, held)
		out := w.sgOK("hold", "user", w.primary.Name, "--for", "1h", "--reason", "abuse report 4711", "--json")
		var res struct {
			Changed bool   `json:"changed"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Changed {
			t.Errorf("hold --json = %q (%v)", out, err)
		}
		w.expectBlocked(&w.primary, remote(587)...)
		w.expectReach(&w.supp, relay)
		if !heldSession.Ended(t) || otherSession.Ended(t) {
			t.Errorf("after the hold: the held user's session ended = %v, another member's = %v; want true, false",
				heldSession.Ended(t), otherSession.Ended(t))
		}
		if h := w.held(); len(h) != 1 || h[0].User != w.primary.Name || h[0].Reason != "abuse report 4711" || h[0].Until == nil {
			t.Errorf("held = %+v", h)
		}
		if r := w.sg("hold", "user", "root"); r.code != 2 || !strings.Contains(r.stderr, "cannot be held") {
			t.Errorf("hold user root = exit %d, %q; want 2 and why", r.code, r.stderr)
		}
		w.sgOK("release", "user", w.primary.Name)
		w.expectReach(&w.primary, remote(587)...)
	})
	t.Run("api", func(t *testing.T) {
		w.t = t
		w.startDaemon(t)
		var tok struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal([]byte(w.sgOK("token", "create", "hold-test", "--role", "admin", "--json")), &tok); err != nil {
			t.Fatal(err)
		}
		api := func(method, body string) (int, string) {
			t.Helper()
			client := w.client.HTTPClient(5 * time.Second)
			defer client.CloseIdleConnections()
			req, err := http.NewRequest(method, "http://"+metricsAddr+"/api/v1/holds", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s /api/v1/holds: %v", method, err)
			}
			defer resp.Body.Close()
			answer, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("%s /api/v1/holds: read the answer: %v", method, err)
			}
			return resp.StatusCode, string(answer)
		}
		if code, body := api("POST", `{"user": "`+w.supp.Name+`", "for": "0", "reason": "api test"}`); code != 200 || !strings.Contains(body, `"changed": true`) {
			t.Fatalf("POST /api/v1/holds = %d %s", code, body)
		}
		w.expectBlocked(&w.supp, remote(587)...)
		w.expectReach(&w.primary, relay)
		if code, body := api("GET", ""); code != 200 || !strings.Contains(body, `"user": "`+w.supp.Name+`"`) || !strings.Contains(body, `"until": null`) {
			t.Errorf("GET /api/v1/holds = %d %s", code, body)
		}
		if code, body := api("DELETE", `{"user": "`+w.supp.Name+`"}`); code != 200 || !strings.Contains(body, `"changed": true`) {
			t.Fatalf("DELETE /api/v1/holds = %d %s", code, body)
		}
		w.expectReach(&w.supp, remote(587)...)
		var recs []struct{ Actor, Operation string }
		json.Unmarshal([]byte(w.sgOK("audit", "--json")), &recs)
		var ops []string
		for _, r := range recs {
			if r.Operation == "hold" || r.Operation == "release" {
				ops = append(ops, r.Operation+" "+r.Actor)
			}
		}
		if got := strings.Join(ops, "; "); !strings.Contains(got, "release api:hold-test; hold api:hold-test") {
			t.Errorf("audit of holds = %q, want the API's hold and release by api:hold-test", got)
		}
	})
}
