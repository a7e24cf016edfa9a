package daemon

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/webhook"
)

// maxUserLabels bounds the cardinality of the per-user counter: a flood from
// thousands of uids must not blow up every scraper's memory.
const maxUserLabels = 100

// otherUser is the label for users past maxUserLabels.
const otherUser = "other"

// metrics are the daemon's Prometheus series, on a private registry.
type metrics struct {
	registry       *prometheus.Registry
	enabled        prometheus.Gauge
	backend        *prometheus.GaugeVec
	allowedUIDs    prometheus.Gauge
	attempts       *prometheus.CounterVec
	driftRepairs   prometheus.Counter
	dropped        *prometheus.CounterVec
	folded         *prometheus.CounterVec
	applyDuration  prometheus.Histogram
	lastVerify     prometheus.Gauge
	reconcileFails prometheus.Counter
	// webhookFailures counts webhook notifications not delivered, by reason.
	webhookFailures *prometheus.CounterVec

	mu         sync.Mutex // protects the following fields
	userLabels map[string]bool
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		enabled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "smtpguard_enabled", Help: "1 when the SMTP restriction is enabled.",
		}),
		backend: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "smtpguard_backend_info", Help: "The enforcement backend in use (value 1).",
		}, []string{"backend"}),
		allowedUIDs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "smtpguard_allowed_uids", Help: "Number of uids allowed to connect to remote SMTP ports.",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpguard_blocked_attempts_total",
			Help: "Connection attempts to restricted ports by users not allowed, by user (at most 100 users, then \"other\") and action (blocked or logged).",
		}, []string{"user", "action"}),
		driftRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smtpguard_drift_repairs_total", Help: "Times the kernel rules were found changed by someone else and restored.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpguard_events_dropped_total",
			Help: "Blocked-attempt events not recorded (or notifications not sent), by reason (queue_full, aggregate_limit, kernel, ring_full, store, notify).",
		}, []string{"reason"}),
		folded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpguard_events_folded_total",
			Help: "Blocked-attempt events recorded under a folded destination because their uid reached the per-minute row cap, by what they were folded into (prefix: the /24 or /64, other).",
		}, []string{"to"}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "smtpguard_apply_duration_seconds", Help: "Time to change the kernel rules.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		lastVerify: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "smtpguard_last_verify_success_timestamp_seconds", Help: "When the kernel rules were last verified to match the policy.",
		}),
		reconcileFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smtpguard_reconcile_errors_total", Help: "Failed attempts to verify or repair the kernel rules.",
		}),
		webhookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpguard_webhook_failures_total",
			Help: "Webhook notifications not delivered, by reason (queue_full: dropped, the queue was full; gave_up: every attempt failed; rejected: the receiver refused it for good).",
		}, []string{"reason"}),
		userLabels: map[string]bool{},
	}
	m.registry.MustRegister(m.enabled, m.backend, m.allowedUIDs, m.attempts, m.driftRepairs, m.dropped, m.folded,
		m.applyDuration, m.lastVerify, m.reconcileFails, m.webhookFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, reason := range []string{"queue_full", "aggregate_limit", "kernel", enforce.LostRingFull, "store", "notify"} {
		m.dropped.WithLabelValues(reason) // export zeros so alerts can use rate()
	}
	for _, reason := range []string{webhook.FailQueueFull, webhook.FailGaveUp, webhook.FailRejected} {
		m.webhookFailures.WithLabelValues(reason)
	}
	for _, to := range []string{foldPrefix, foldedOther} {
		m.folded.WithLabelValues(to)
	}
	return m
}

// userLabel returns user, or "other" once maxUserLabels users have been seen.
func (m *metrics) userLabel(user string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.userLabels[user] {
		return user
	}
	if len(m.userLabels) >= maxUserLabels {
		return otherUser
	}
	m.userLabels[user] = true
	return user
}
