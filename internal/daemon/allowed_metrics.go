package daemon

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// allowedCollector exports smtpguard_allowed_connections_total{user}: the
// connections the active backend let through to restricted ports, read from
// the backend's own per-uid counters at each scrape (enforce.AllowedCounter),
// so nothing is counted on the packet path twice. Labels are capped as the
// blocked-attempts counter's are: the first maxUserLabels users keep theirs,
// the rest add up under "other".
type allowedCollector struct {
	desc *prometheus.Desc
	// counts reads the active backend's counters; ok is false when the
	// restriction is off or the backend keeps none.
	counts func(ctx context.Context) (map[uint32]uint64, bool)
	name   func(uid uint32) string

	mu     sync.Mutex // protects labels
	labels map[string]bool
}

// allowedScrapeTimeout bounds one read of the kernel's counters.
const allowedScrapeTimeout = 2 * time.Second

func newAllowedCollector(counts func(context.Context) (map[uint32]uint64, bool), name func(uint32) string) *allowedCollector {
	return &allowedCollector{
		desc: prometheus.NewDesc("smtpguard_allowed_connections_total",
			"Connections to restricted ports the backend let through, by user (at most 100 users, then \"other\"); restarts when the kernel rules are rebuilt.",
			[]string{"user"}, nil),
		counts: counts,
		name:   name,
		labels: map[string]bool{},
	}
}

func (c *allowedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *allowedCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), allowedScrapeTimeout)
	defer cancel()
	counts, ok := c.counts(ctx)
	if !ok {
		return
	}
	for label, v := range c.byLabel(counts) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v), label)
	}
}

// byLabel sums counts per user label, in uid order so the same users keep
// their own labels from one scrape to the next.
func (c *allowedCollector) byLabel(counts map[uint32]uint64) map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]uint64{}
	for _, uid := range slices.Sorted(maps.Keys(counts)) {
		user := c.name(uid)
		if user == "" {
			user = "uid " + strconv.FormatUint(uint64(uid), 10)
		}
		if !c.labels[user] {
			if len(c.labels) >= maxUserLabels {
				user = otherUser
			} else {
				c.labels[user] = true
			}
		}
		out[user] += counts[uid]
	}
	return out
}

// allowedCounts reads the active backend's counters while enforcing.
func (d *Daemon) allowedCounts(ctx context.Context) (map[uint32]uint64, bool) {
	d.mu.Lock()
	enabled, active := d.lastEnabled, d.active
	d.mu.Unlock()
	if !enabled {
		return nil, false
	}
	ac, ok := d.activeBackend(active).(enforce.AllowedCounter)
	if !ok {
		return nil, false
	}
	counts, err := ac.AllowedConnections(ctx)
	if err != nil {
		d.log.Debug("cannot read allowed connection counts", "backend", active, "err", err)
		return nil, false
	}
	return counts, true
}
