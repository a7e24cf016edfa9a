//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// systemUser is an existing account (the MTA's) as a test user.
func systemUser(t *testing.T, name string) *testutil.User {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no %s account on this host (the MTA's): %v", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &testutil.User{Name: u.Username, UID: uint32(uid), GID: uint32(gid)}
}

// sixWithinAMinute connects six times as u to dst and names each outcome:
// "through", "refused" (the backend's refusal, at once, without an SMTP
// reply: no explain responder answered), or what happened instead.
func (w *world) sixWithinAMinute(u *testutil.User, dst string) []string {
	w.t.Helper()
	var got []string
	for _, r := range w.connect(u, dst, dst, dst, dst, dst, dst) {
		switch {
		case r.OK && strings.HasPrefix(r.Banner, "220 "):
			got = append(got, "through")
		case !r.OK && r.Errno == w.refusalErrno() && r.Elapsed < 500*time.Millisecond:
			got = append(got, "refused")
		default:
			got = append(got, r.String()+" banner "+strconv.Quote(r.Banner))
		}
	}
	return got
}

// rateLimitedOnce waits until events --json records exactly one
// rate-limited attempt of u to 192.0.2.2:25, and fails on a rate-limited
// root or MTA, or an attempt of u recorded as blocked or explained.
func (w *world) rateLimitedOnce(t *testing.T, u, mta *testutil.User) {
	t.Helper()
	w.waitUntil(t, "the refused connection of "+u.Name+" appears in events --json as rate-limited", 5*time.Second, func() bool {
		var evs []event
		if err := json.Unmarshal([]byte(w.sgOK("events", "--json")), &evs); err != nil {
			t.Fatalf("events --json: %v", err)
		}
		n := 0
		for _, e := range evs {
			if (e.Action == "blocked" || e.Action == "explained") && e.UID == u.UID {
				t.Fatalf("a rate-limited connection was recorded as %s: %+v", e.Action, e)
			}
			if e.Action == "rate-limited" && (e.UID == 0 || e.UID == mta.UID) {
				t.Fatalf("root or the MTA was rate limited: %+v", e)
			}
			if e.Action == "rate-limited" && e.UID == u.UID && e.User == u.Name && e.Destination == "192.0.2.2" && e.Port == 25 {
				n += e.Count
			}
		}
		if n > 1 {
			t.Fatalf("%d rate-limited attempts of %s recorded, want 1", n, u.Name)
		}
		return n == 1
	})
}

// TestPrivilegedRateLimit, for every backend: with --rate 5/m a user's
// first five connections within a minute pass and the sixth is refused at
// once, recorded by the daemon as rate-limited; root and the MTA's account
// are never limited, even under a default of 1/m; the allowed connections
// are counted per user in the metrics and in status. Under explain mode a
// connection over its limit is refused as in reject: the responder
// explains refusals of users without an allowance, not of allowed ones
// over their rate.
func TestPrivilegedRateLimit(t *testing.T) {
	forEachBackend(t, testRateLimit)
}

func testRateLimit(t *testing.T, w *world) {
	mtaUser := systemUser(t, "Debian-exim")
	w.enable()
	w.sgOK("allow", "user", w.plain.Name, "--rate", "5/m")
	w.sgOK("allow", "user", w.primary.Name, "--rate", "5/m") // for the explain case
	w.sgOK("allow", "user", mtaUser.Name, "--rate", "1/m")   // stored, never enforced
	w.sgOK("set", "rate-limit", "1/m")
	w.startDaemon(t)

	dst := testutil.HostPort("192.0.2.2", 25)
	fiveThenRefused := []string{"through", "through", "through", "through", "through", "refused"}

	t.Run("reject: the sixth within a minute is refused, root and the MTA are not limited, counts are shown", func(t *testing.T) {
		w.t = t
		if diff := cmp.Diff(fiveThenRefused, w.sixWithinAMinute(&w.plain, dst)); diff != "" {
			t.Errorf("%s's six connections within a minute (-want +got):\n%s", w.plain.Name, diff)
		}
		six := []string{dst, dst, dst, dst, dst, dst}
		w.expectReach(nil, six...)
		w.expectReach(nil, dst, dst)
		w.expectReach(mtaUser, dst, dst, dst)
		w.rateLimitedOnce(t, &w.plain, mtaUser)

		m, err := w.metrics()
		if err != nil {
			t.Fatal(err)
		}
		metric := func(user string) float64 { return m[fmt.Sprintf(`smtpguard_allowed_connections_total{user=%q}`, user)] }
		if metric(w.plain.Name) != 5 || metric("root") != 8 || metric(mtaUser.Name) != 3 {
			t.Errorf("smtpguard_allowed_connections_total: %s %v, root %v, %s %v; want 5, 8, 3",
				w.plain.Name, metric(w.plain.Name), metric("root"), mtaUser.Name, metric(mtaUser.Name))
		}

		var st struct {
			RateLimit  string `json:"rate_limit"`
			RateLimits []struct {
				User string `json:"user"`
				Rate string `json:"rate"`
			} `json:"rate_limits"`
			Allowed []struct {
				User  string `json:"user"`
				Count uint64 `json:"count"`
			} `json:"allowed_connections"`
		}
		if err := json.Unmarshal([]byte(w.sgOK("status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		counts := map[string]uint64{}
		for _, c := range st.Allowed {
			counts[c.User] = c.Count
		}
		if diff := cmp.Diff(map[string]uint64{w.plain.Name: 5, "root": 8, mtaUser.Name: 3}, counts); diff != "" {
			t.Errorf("status allowed_connections (-want +got):\n%s", diff)
		}
		limits := map[string]string{}
		for _, r := range st.RateLimits {
			limits[r.User] = r.Rate
		}
		if diff := cmp.Diff(map[string]string{w.plain.Name: "5/m", w.primary.Name: "5/m"}, limits); diff != "" {
			t.Errorf("status rate_limits (-want +got):\n%s", diff)
		}
	})

	t.Run("explain: over its limit a connection is refused as in reject, without the responder", func(t *testing.T) {
		w.t = t
		w.sgOK("set", "mode", "explain")
		var cg *testutil.Cgroup
		if w.isBPF() {
			cg = w.cg
		}
		waitResponder(t, w, cg, w.client, policy.DefaultExplainPort)
		// Explain mode is in the kernel: a user without an allowance is
		// explained, so a refusal below is the rate limit's own.
		w.waitUntil(t, "the kernel hands "+w.supp.Name+"'s connection to the responder", 5*time.Second, func() bool {
			r := w.connect(&w.supp, dst)[0]
			return r.OK && strings.HasPrefix(r.Banner, "554 5.7.1 ")
		})
		if diff := cmp.Diff(fiveThenRefused, w.sixWithinAMinute(&w.primary, dst)); diff != "" {
			t.Errorf("%s's six connections within a minute under explain mode (-want +got):\n%s", w.primary.Name, diff)
		}
		w.expectReach(nil, dst, dst)
		w.expectReach(mtaUser, dst, dst)
		w.rateLimitedOnce(t, &w.primary, mtaUser)
	})
	w.t = t
}
