package agentserver

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/basalt-dev/basalt/agents/httpstatus"
	"github.com/basalt-dev/basalt/agents/protocol"
)

// Metrics, registered in controller-runtime's registry so the manager's metrics endpoint serves
// them.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "agent_api", Name: "requests_total",
		Help: "Agent API requests by path and HTTP status code.",
	}, []string{"path", "code"})
	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "basalt", Subsystem: "agent_api", Name: "request_duration_seconds",
		Help: "Agent API request durations by path and HTTP status code (plan long polls included).",
		// Long polls last up to protocol.MaxPlanWait; artifact downloads longer.
		Buckets: []float64{0.005, 0.025, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 600},
	}, []string{"path", "code"})
	registrationsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "agent_api", Name: "registrations_total",
		Help: "Agents that registered: bootstrap tokens exchanged for client certificates.",
	})
	renewalsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "agent_api", Name: "renewals_total",
		Help: "Agent client certificates renewed over mutual TLS.",
	})
	rejectedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "agent_api", Name: "rejected_requests_total",
		Help: "Agent API requests refused, by path and reason (invalid_token, no_identity, forbidden, bad_request, too_large, ...).",
	}, []string{"path", "reason"})
)

func init() {
	metrics.Registry.MustRegister(requestsTotal, requestDuration, registrationsTotal, renewalsTotal, rejectedTotal)
}

// pathLabel maps a request path to a bounded label value.
func pathLabel(p string) string {
	switch {
	case p == protocol.PathRegister, p == protocol.PathPlan, p == protocol.PathStatus, p == protocol.PathRenew:
		return p
	case strings.HasPrefix(p, protocol.PathArtifacts):
		return strings.TrimSuffix(protocol.PathArtifacts, "/")
	}
	return "other"
}

// instrument counts and times every request.
func instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := httpstatus.NewRecorder(w)
		next.ServeHTTP(rec, r)
		code := strconv.Itoa(rec.Code())
		path := pathLabel(r.URL.Path)
		requestsTotal.WithLabelValues(path, code).Inc()
		requestDuration.WithLabelValues(path, code).Observe(time.Since(start).Seconds())
	})
}
