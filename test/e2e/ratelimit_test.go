//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os/user"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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

// With --rate 5/m a user's first five connections within a minute pass and
// the sixth is refused at once, recorded by the daemon as rate-limited; root
// and the MTA's account are never limited, even under a default of 1/m; the
// allowed connections are counted per user in the metrics and in status.
func TestPrivilegedRateLimitNft(t *testing.T) {
	w := newWorld(t)
	mtaUser := systemUser(t, "Debian-exim")
	w.sgOK("enable", "--backend", "nft")
	w.sgOK("allow", "user", w.plain.Name, "--rate", "5/m")
	w.sgOK("allow", "user", mtaUser.Name, "--rate", "1/m") // stored, never enforced
	w.sgOK("set", "rate-limit", "1/m")
	w.startDaemon(t)

	dst := testutil.HostPort("192.0.2.2", 25)
	six := []string{dst, dst, dst, dst, dst, dst}
	var got []string
	for _, r := range testutil.ConnectAs(t, w.client, &w.plain, six...) {
		switch {
		case r.OK:
			got = append(got, "through")
		case r.Errno == "ECONNREFUSED" && r.Elapsed < 500*time.Millisecond:
			got = append(got, "refused")
		default:
			got = append(got, r.String())
		}
	}
	if diff := cmp.Diff([]string{"through", "through", "through", "through", "through", "refused"}, got); diff != "" {
		t.Errorf("%s's six connections within a minute (-want +got):\n%s", w.plain.Name, diff)
	}
	w.expectReach(nil, six...)
	w.expectReach(nil, dst, dst)
	w.expectReach(mtaUser, dst, dst, dst)

	w.waitUntil(t, "the refused connection appears in events --json as rate-limited", 5*time.Second, func() bool {
		var evs []event
		if err := json.Unmarshal([]byte(w.sgOK("events", "--json")), &evs); err != nil {
			t.Fatalf("events --json: %v", err)
		}
		for _, e := range evs {
			if e.Action == "blocked" && e.UID == w.plain.UID {
				t.Fatalf("a rate-limited connection was recorded as blocked: %+v", e)
			}
			if e.Action == "rate-limited" && (e.UID == 0 || e.UID == mtaUser.UID) {
				t.Fatalf("root or the MTA was rate limited: %+v", e)
			}
			if e.Action == "rate-limited" && e.UID == w.plain.UID && e.User == w.plain.Name && e.Destination == "192.0.2.2" && e.Port == 25 && e.Count == 1 {
				return true
			}
		}
		return false
	})

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
	if diff := cmp.Diff(map[string]string{w.plain.Name: "5/m"}, limits); diff != "" {
		t.Errorf("status rate_limits (-want +got):\n%s", diff)
	}
}
