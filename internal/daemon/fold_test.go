package daemon

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/store"
)

// A flood by one uid to 60,000 random destinations within one minute is
// stored as a bounded number of rows, every attempt counted (issue 12, hole
// 6: it stored 60,000 rows, ~1 MB/s kept for 30 days).
func TestFloodOfDestinationsIsFoldedIntoBoundedRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 6))
	random6 := func() netip.Addr {
		var b [16]byte
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8 // 2001:db8::/32
		for i := 4; i < 16; i++ {
			b[i] = byte(rng.UintN(256))
		}
		return netip.AddrFrom16(b)
	}
	random4 := func() netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.UintN(256))}) }
	for _, tt := range []struct {
		name     string
		dst      func() netip.Addr
		family   int
		maxRows  int
		wantDsts []string // some of the destinations stored
	}{
		{"IPv6", random6, 6, rowsPerMinute + 1, []string{foldedOther}},
		{"IPv4", random4, 4, exactRowsPerMinute + 1, []string{"192.0.2.0/24"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			m := newMetrics()
			r := &recorder{queue: make(chan enforce.Event, 1), store: f.eng, metrics: m,
				log: slog.New(slog.DiscardHandler), maxAggs: 10000, maxLines: 1}
			ctx := context.Background()
			minute := time.Now().Truncate(time.Minute)
			const attempts, flushEvery = 60000, 5000 // a flush a second
			aggs := map[aggKey]*store.Event{}
			for i := range attempts {
				at := minute.Add(time.Duration(i) * time.Minute / attempts)
				r.add(aggs, enforce.Event{Time: at, UID: 1002, HasUID: true, Family: tt.family, Dst: tt.dst(), DstPort: 25, Action: enforce.ActionBlocked})
				if (i+1)%flushEvery == 0 {
					r.flush(ctx, aggs)
					aggs = map[aggKey]*store.Event{}
				}
			}
			r.flush(ctx, aggs)
			evs, err := f.eng.Store().Events(ctx, store.EventFilter{})
			if err != nil {
				t.Fatal(err)
			}
			var total int64
			var exact, prefixes int
			dsts := map[string]bool{}
			for _, e := range evs {
				total += e.Count
				dsts[e.Address] = true
				switch {
				case e.Address == foldedOther:
				case strings.Contains(e.Address, "/"):
					prefixes++
					if p, err := netip.ParsePrefix(e.Address); err != nil || p.Bits() != map[int]int{4: 24, 6: 64}[tt.family] {
						t.Errorf("folded destination %q is not a /24 or /64 prefix", e.Address)
					}
				default:
					exact++
				}
			}
			if len(evs) > tt.maxRows {
				t.Errorf("%d attempts to random destinations stored %d rows, want at most %d", attempts, len(evs), tt.maxRows)
			}
			if total != attempts {
				t.Errorf("stored attempts = %d, want %d: folding must keep every attempt counted", total, attempts)
			}
			if exact != exactRowsPerMinute {
				t.Errorf("%d rows with an exact destination, want the first %d", exact, exactRowsPerMinute)
			}
			for _, d := range tt.wantDsts {
				if !dsts[d] {
					t.Errorf("no row for destination %q among %v", d, dsts)
				}
			}
			folded := promtest.ToFloat64(m.folded.WithLabelValues(foldPrefix)) + promtest.ToFloat64(m.folded.WithLabelValues(foldedOther))
			var exactCount int64
			for _, e := range evs {
				if !strings.Contains(e.Address, "/") && e.Address != foldedOther {
					exactCount += e.Count
				}
			}
			if int64(folded) != attempts-exactCount {
				t.Errorf("smtpguard_events_folded_total = %v, want %d (attempts stored under a prefix or other)", folded, attempts-exactCount)
			}
			if n := promtest.ToFloat64(m.dropped.WithLabelValues("aggregate_limit")); n != 0 {
				t.Errorf("aggregate_limit drops = %v, want 0", n)
			}
		})
	}
}

// Folding is per uid: one user's flood leaves another's attempts exact, and
// a new minute starts a new budget.
func TestFoldingIsPerUIDAndMinute(t *testing.T) {
	var fo folder
	minute := int64(29000000)
	for i := range rowsPerMinute + 10 {
		fo.destination(1002, minute, netip.AddrFrom4([4]byte{198, 51, byte(i), 1}), 25, enforce.ActionBlocked)
	}
	if dst, folded, _ := fo.destination(1002, minute, netip.MustParseAddr("203.0.113.9"), 25, enforce.ActionBlocked); dst != foldedOther || folded != foldedOther {
		t.Errorf("flooding uid's next destination = %q (%q), want other", dst, folded)
	}
	if dst, folded, _ := fo.destination(1001, minute, netip.MustParseAddr("203.0.113.9"), 25, enforce.ActionBlocked); dst != "203.0.113.9" || folded != "" {
		t.Errorf("another uid's destination = %q (%q), want it exact", dst, folded)
	}
	if dst, _, _ := fo.destination(1002, minute+1, netip.MustParseAddr("203.0.113.9"), 25, enforce.ActionBlocked); dst != "203.0.113.9" {
		t.Errorf("flooding uid's destination in the next minute = %q, want it exact", dst)
	}
	// An exact destination recorded before the cap stays exact.
	if dst, _, _ := fo.destination(1002, minute, netip.AddrFrom4([4]byte{198, 51, 0, 1}), 25, enforce.ActionBlocked); dst != "198.51.0.1" {
		t.Errorf("a destination recorded exactly before the cap = %q, want it exact still", dst)
	}
}
