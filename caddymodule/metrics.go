package caddymodule

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onepush/onepush/pushauth"
)

// promMetrics implements pushauth.Metrics with Prometheus collectors. The
// collectors are process-wide, like the engine they measure (which
// survives config reloads); every config registers them in its own Caddy
// metrics registry, which the admin endpoint /metrics serves.
type promMetrics struct {
	challenges  *prometheus.CounterVec
	held        prometheus.Gauge
	latency     prometheus.Histogram
	pushes      *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
	passkeys    *prometheus.CounterVec // PasskeyResult
}

var metrics = newPromMetrics()

func newPromMetrics() *promMetrics {
	return &promMetrics{
		challenges: prometheus.NewCounterVec(prometheus.CounterOpts(metricOpts("challenges_total",
			"Challenges by policy rule and outcome (created, approved, denied, expired, cancelled, superseded; refused before creation: push_streak, too_many_pending).")),
			[]string{"rule", "outcome"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts(metricOpts("held_requests",
			"Requests held right now, waiting for a phone."))),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "caddy", Subsystem: "onepush", Name: "approval_latency_seconds",
			Help:    "Time from challenge creation to approval.",
			Buckets: []float64{0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120, 300, 600},
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts(metricOpts("push_sends_total",
			"Push sends by provider (apns, fcm, webhook) and result (sent, dead_token, failed, queue_full).")),
			[]string{"provider", "result"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts(metricOpts("store_errors_total",
			"Store operations that failed, by operation.")),
			[]string{"op"}),
		passkeys: prometheus.NewCounterVec(prometheus.CounterOpts(metricOpts("passkey_results_total",
			"Passkey ceremonies by kind (login, transaction, registration) and result (approved, rejected, clone, added).")),
			[]string{"ceremony", "result"}),
	}
}

// metricOpts names a collector caddy_onepush_<name>, beside Caddy's own.
func metricOpts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: "caddy", Subsystem: "onepush", Name: name, Help: help}
}

// register adds the collectors to reg; a collector already there is fine.
func (m *promMetrics) register(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.challenges, m.held, m.latency, m.pushes, m.storeErrors, m.passkeys} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

func (m *promMetrics) ChallengeOutcome(rule, outcome string) {
	m.challenges.WithLabelValues(rule, outcome).Inc()
}
func (m *promMetrics) Held(delta int) { m.held.Add(float64(delta)) }
func (m *promMetrics) ApprovalLatency(d time.Duration) {
	m.latency.Observe(d.Seconds())
}
func (m *promMetrics) PushResult(provider, result string) {
	m.pushes.WithLabelValues(provider, result).Inc()
}
func (m *promMetrics) StoreError(op string) { m.storeErrors.WithLabelValues(op).Inc() }

// PasskeyResult counts a passkey ceremony (pushauth.PasskeyMetrics).
func (m *promMetrics) PasskeyResult(ceremony, result string) {
	m.passkeys.WithLabelValues(ceremony, result).Inc()
}

// Interface guards
var _ pushauth.Metrics = (*promMetrics)(nil)
