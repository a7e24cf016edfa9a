//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// A blocked user connecting to thousands of random IPv6 destinations adds a
// bounded number of rows to the database, every attempt still counted
// (issue 12, hole 6: a 10 s flood stored 60,000 rows, about 1 MB/s kept for
// 30 days).
func TestPrivilegedFloodOfDestinationsStaysBounded(t *testing.T) {
	w := newWorld(t)
	// Every /64 of the documentation prefix leads to the server, so each
	// random destination has a route and reaches the output hook.
	w.client.Exec(t, "ip", "-6", "route", "add", "2001:db8::/32", "via", "2001:db8::2")
	w.sgOK("enable", "--backend", "nft")
	w.startDaemon(t)

	const attempts = 12000 // bounded: one helper process, about a second of refused connects
	rng := rand.New(rand.NewPCG(12, 6))
	addrs := make([]string, attempts)
	for i := range addrs {
		addrs[i] = testutil.HostPort(fmt.Sprintf("2001:db8:%x:%x::%x", rng.UintN(1<<16), rng.UintN(1<<16), 1+rng.UintN(1<<16)), 25)
	}
	began := time.Now()
	const chunk = 2000 // the helper gets its addresses on its command line
	for i := 0; i < len(addrs); i += chunk {
		for _, r := range testutil.ConnectAs(t, w.client, &w.plain, addrs[i:min(i+chunk, len(addrs))]...) {
			if r.OK {
				t.Fatalf("flood connect succeeded: %s", r)
			}
		}
	}
	minutes := int(time.Since(began)/time.Minute) + 2 // the minutes the flood touched, at most

	type row struct {
		event
		Folded bool `json:"folded"`
	}
	var rows []row
	sum := func(m map[string]float64, prefix string) float64 {
		var s float64
		for k, v := range m {
			if strings.HasPrefix(k, prefix) {
				s += v
			}
		}
		return s
	}
	var recorded int
	var m map[string]float64
	w.waitUntil(t, "every attempt recorded or counted as dropped", 10*time.Second, func() bool {
		rows = nil
		if err := json.Unmarshal([]byte(w.sgOK("events", "--json")), &rows); err != nil {
			t.Fatalf("events --json: %v", err)
		}
		recorded = 0
		for _, r := range rows {
			recorded += r.Count
		}
		var err error
		m, err = w.metrics()
		return err == nil && recorded+int(sum(m, "smtpguard_events_dropped_total")) >= attempts
	})
	dropped := int(sum(m, "smtpguard_events_dropped_total"))
	t.Logf("%d attempts in %v: %d rows, %d recorded, %d dropped, %v folded", attempts, time.Since(began).Round(time.Millisecond),
		len(rows), recorded, dropped, sum(m, "smtpguard_events_folded_total"))
	if recorded+dropped != attempts {
		t.Errorf("recorded %d + dropped %d attempts, want exactly the %d made", recorded, dropped, attempts)
	}
	// 48 rows per uid and minute, plus one "other" row per port.
	if bound := minutes * (48 + 1); len(rows) > bound {
		t.Errorf("the flood stored %d rows, want at most %d (%d minutes)", len(rows), bound, minutes)
	}
	var prefixes, other int
	for _, r := range rows {
		if r.UID != w.plain.UID {
			t.Errorf("a row for uid %d, want only the flooding user %d: %+v", r.UID, w.plain.UID, r)
		}
		switch {
		case r.Destination == "other":
			other++
		case strings.HasSuffix(r.Destination, "::/64"):
			prefixes++
		}
		if r.Folded != (r.Destination == "other" || strings.Contains(r.Destination, "/")) {
			t.Errorf("row %+v: folded %v does not match its destination", r, r.Folded)
		}
	}
	if prefixes == 0 || other == 0 {
		t.Errorf("%d prefix rows and %d other rows, want both:\n%s", prefixes, other, w.sgOK("events"))
	}
	if folded := sum(m, "smtpguard_events_folded_total"); folded == 0 {
		t.Error("smtpguard_events_folded_total is 0 after the flood")
	}
}
