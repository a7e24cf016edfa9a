package daemon

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// scrapeAllowed returns smtpguard_allowed_connections_total by user label.
func scrapeAllowed(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "smtpguard_allowed_connections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// The allowed-connections counter keeps the blocked counter's cap: the first
// 100 users keep their labels, scrape after scrape, the rest add up as other.
func TestAllowedConnectionsMetricCap(t *testing.T) {
	counts := map[uint32]uint64{}
	for uid := uint32(1000); uid < 1150; uid++ {
		counts[uid] = 2
	}
	on := true
	c := newAllowedCollector(func(context.Context) (map[uint32]uint64, bool) { return counts, on },
		func(uid uint32) string {
			if uid == 1000 {
				return "alice"
			}
			return ""
		})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	for scrape := range 2 {
		got := scrapeAllowed(t, reg)
		if len(got) != maxUserLabels+1 || got["alice"] != float64(2+scrape) || got["uid 1001"] != 2 || got[otherUser] != 2*(150-maxUserLabels) {
			t.Errorf("scrape %d: %d series, alice %v, uid 1001 %v, other %v; want %d, %d, 2, %d",
				scrape, len(got), got["alice"], got["uid 1001"], got[otherUser], maxUserLabels+1, 2+scrape, 2*(150-maxUserLabels))
		}
		counts[1000]++
	}
	on = false
	if got := scrapeAllowed(t, reg); len(got) != 0 {
		t.Errorf("restriction off: %v, want no series", got)
	}
}

// Joining a rate-limited group changes an allowed user's rate and nothing
// else: the daemon applies it as it applies any account change.
func TestAccountChangeOfOnlyARateIsApplied(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rate := "5/m"
	f.eng.Enable(ctx, admin, "fake")
	f.eng.Allow(ctx, admin, policy.KindUser, "bob")
	if _, err := f.eng.AllowWith(ctx, admin, policy.KindGroup, "mailers", engine.AllowOptions{Rate: &rate}); err != nil {
		t.Fatal(err)
	}
	f.start(t, Config{})
	five := policy.Rate{Count: 5, Period: time.Minute}
	if got := f.backend.Installed().RateLimits; !slices.Equal(got, []policy.UIDRate{{UID: 1001, Rate: five}}) {
		t.Fatalf("rate limits = %v, want alice's 5/m", got)
	}
	// usermod -aG mailers bob: bob stays allowed, now at the group's rate.
	write(t, f.cfg.GroupPath, strings.Replace(testGroup, "mailers:x:2000:alice", "mailers:x:2000:alice,bob", 1))
	waitFor(t, "bob limited after joining mailers", func() bool {
		return slices.Equal(f.backend.Installed().RateLimits, []policy.UIDRate{{UID: 1001, Rate: five}, {UID: 1002, Rate: five}})
	})
}
