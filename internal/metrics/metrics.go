// Package metrics defines the operator's Prometheus metrics, registered with
// controller-runtime's registry so the manager's /metrics serves them. Label
// values are profile keys, operations, results and HTTP statuses: never a
// challenge, a credential or a subject.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The results an enrollment ends with.
const (
	ResultIssued   = "issued"
	ResultFailed   = "failed"
	ResultRejected = "rejected" // the server's FAILURE
	ResultPolicy   = "policy"   // refused by the profile's policy, nothing sent
)

var (
	// Enrollments counts finished enrollments by profile and result.
	Enrollments = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scep_enrollments_total",
		Help: "Finished SCEP enrollments by profile and result (issued, rejected, failed, policy).",
	}, []string{"profile", "result"})

	// EnrollmentsByAlgorithm counts issued enrollments by the content
	// cipher and digest their messages were built with (the crypto floor's
	// effect, seen across profiles).
	EnrollmentsByAlgorithm = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scep_enrollments_by_algorithm_total",
		Help: "Issued SCEP enrollments by profile, content cipher and digest (e.g. AES-256-CBC, SHA-512).",
	}, []string{"profile", "cipher", "digest"})

	// EnrollmentDuration observes the time from CertificateRequest creation
	// to its certificate, including PENDING time.
	EnrollmentDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "scep_enrollment_duration_seconds",
		Help:    "Time from CertificateRequest creation to the issued certificate.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400},
	}, []string{"profile"})

	// Pending is the number of requests a server answered PENDING and that
	// are being polled.
	Pending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "scep_pending_requests",
		Help: "CertificateRequests the SCEP server answered PENDING, being polled with CertPoll.",
	}, []string{"profile"})

	// ServerRequests counts HTTP round trips to SCEP servers.
	ServerRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scep_server_requests_total",
		Help: "HTTP requests to SCEP servers by profile, operation and HTTP status (0: no answer).",
	}, []string{"profile", "operation", "status"})

	// ServerRequestDuration observes HTTP round trips to SCEP servers.
	ServerRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "scep_server_request_duration_seconds",
		Help:    "Duration of HTTP requests to SCEP servers by profile and operation.",
		Buckets: prometheus.DefBuckets,
	}, []string{"profile", "operation"})

	// CAExpiry is the notAfter of each CA and RA certificate a profile trusts.
	CAExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "scep_ca_certificate_expiry_timestamp_seconds",
		Help: "notAfter (Unix seconds) of the CA and RA certificates each profile trusts, by role and SHA-256 fingerprint.",
	}, []string{"profile", "role", "sha256"})

	// ProfileReady is 1 while a profile's Ready condition is True and 0
	// while it is False, with the condition's reason, so an alert can say
	// what to fix. A profile has one series; a deleted profile none.
	ProfileReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "scep_profile_ready",
		Help: "1 when the profile's Ready condition is True, 0 when False; reason is the condition's reason.",
	}, []string{"profile", "reason"})
)

// The events of a CA rollover, for CARollover's event label.
const (
	// RolloverNextCAPublished: the server announced a next CA certificate
	// (GetNextCACert) and its signature verified.
	RolloverNextCAPublished = "next_ca_published"
	// RolloverSwitched: GetCACert answered with the announced CA in place
	// of the previous one.
	RolloverSwitched = "switched"
)

// CARollover counts the events of CA rollovers by profile.
var CARollover = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "scep_ca_rollover_events_total",
	Help: "CA rollover events by profile: next_ca_published (a verified GetNextCACert answer brought a new CA certificate), switched (the profile now uses it).",
}, []string{"profile", "event"})

// Per-server metrics of profiles with failoverURLs (and of every profile's
// url): whether the server answered its last round trip, and how often a
// request moved on from it.
var (
	// ServerUp is 1 when the server's last round trip got an answer other
	// than HTTP 5xx, else 0.
	ServerUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "scep_server_up",
		Help: "1 when the SCEP server's last round trip got an answer other than HTTP 5xx, else 0; by profile and server URL.",
	}, []string{"profile", "server"})
	// Failovers counts requests that moved on from a server (down or 5xx)
	// to the next of the profile's servers.
	Failovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scep_server_failovers_total",
		Help: "Enrollments that moved on from a SCEP server that was down or answered 5xx to the profile's next server; by profile and the server left.",
	}, []string{"profile", "server"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(Enrollments, EnrollmentsByAlgorithm, EnrollmentDuration, Pending, ServerRequests, ServerRequestDuration, CAExpiry, CARollover, ServerUp, Failovers, ProfileReady)
}

// ObserveServerRequest records one HTTP round trip.
func ObserveServerRequest(profile, op string, status int, d time.Duration) {
	ServerRequests.WithLabelValues(profile, op, strconv.Itoa(status)).Inc()
	ServerRequestDuration.WithLabelValues(profile, op).Observe(d.Seconds())
}

// SetProfileReady records a profile's Ready condition, replacing the series
// of its previous reason.
func SetProfileReady(profile string, ready bool, reason string) {
	ProfileReady.DeletePartialMatch(prometheus.Labels{"profile": profile})
	v := 0.0
	if ready {
		v = 1
	}
	ProfileReady.WithLabelValues(profile, reason).Set(v)
}

// ForgetProfile drops the gauges of a deleted profile, so that neither its
// Ready state nor its CA certificates' expiry outlive it (and alert).
func ForgetProfile(profile string) {
	ProfileReady.DeletePartialMatch(prometheus.Labels{"profile": profile})
	CAExpiry.DeletePartialMatch(prometheus.Labels{"profile": profile})
}
