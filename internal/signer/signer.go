// Package signer is what issuer-lib calls to enroll one CertificateRequest
// over SCEP: access and policy first (on every call, before any message
// that carries a CSR), then the transaction (derived from the request, so
// nothing a tenant writes can choose it), then the SCEP client. Its errors
// carry the decision, as issuer-lib expects: PendingError (wait, poll or
// back off; nothing is spent), PermanentError (the request fails),
// anything else (retried by issuer-lib's backoff within MaxRetryDuration).
//
// One concern a file: signer.go (the entry point), access.go (who may use
// a profile, what a request may ask), enrollment.go (one call's state
// machine), outcome.go (the server's answer), resume.go (lost answers),
// message.go (who signs, what CSR is sent), workload.go (Rebuild's key),
// challenge.go, state.go and statekey.go (the authenticated state kept on
// the request), sends.go and slots.go (what this process has in flight),
// pending.go (the pending gauge), bundle.go (the issued chain).
package signer

import (
	"context"
	"fmt"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// Event reasons on CertificateRequests, besides issuer-lib's own.
const (
	EventPolicyViolation = "PolicyViolation"
	EventPending         = "SCEPPending"
	EventRetrying        = "SCEPRetrying"
	EventRejected        = "SCEPRejected"
	EventIssued          = "SCEPIssued"
	// EventResumed: a transaction whose answer was lost (a restart, a
	// leader change, a dropped connection) was found at the server by
	// CertPoll instead of being enrolled again.
	EventResumed = "SCEPResumed"
	// EventStateIgnored: the request carried a transaction state the
	// operator did not write for it (forged, copied from another request,
	// or from a version before authenticated state); it was ignored.
	EventStateIgnored = "SCEPStateIgnored"
	// EventFailover: a server of the profile was down or answered 5xx
	// before the transaction reached it; the next server is tried.
	EventFailover = "SCEPFailover"
)

// Defaults for spec fields a client left out (the API server defaults them).
const (
	defaultMaxAttempts      = 5
	defaultRetryInterval    = 30 * time.Second
	defaultMaxRetryInterval = 10 * time.Minute
	defaultPendingTimeout   = 24 * time.Hour
)

// Signer enrolls CertificateRequests for SCEPProfiles and ClusterSCEPProfiles,
// and Kubernetes CertificateSigningRequests naming either.
type Signer struct {
	// Client patches the state annotation of CertificateRequests and reads
	// Namespaces (cached) for ClusterSCEPProfile namespace selectors.
	Client client.Client
	// APIReader reads CertificateRequests fresh when this process already
	// acted on them (never a stale cache), Certificates and Secrets.
	APIReader client.Reader
	// Registry gives each profile's SCEP client and cached server answer.
	Registry *profiles.Registry
	// ClusterDomain is %domainname%.
	ClusterDomain string
	// Recorder emits Events on CertificateRequests.
	Recorder events.EventRecorder
	// Clock is the time source; nil means the real clock.
	Clock clock.Clock
	// StateKey authenticates the state the signer keeps on requests
	// (HMAC-SHA256). LoadStateKey reads or creates it; empty means a random
	// key for this process only, so state from before a restart is ignored.
	StateKey []byte
	// ProfileShare caps maxConcurrentRequests, which a tenant writes (up to
	// 256) on its own SCEPProfile: with a server that takes connections and
	// answers slowly, a tenant could otherwise hold every shared worker.
	// Zero means no cap.
	ProfileShare int32

	stateKeyOnce sync.Once

	leadMu       sync.Mutex
	leadingSince time.Time

	pendingMu sync.Mutex
	pending   map[string]string // request key -> profile key

	flightMu sync.Mutex
	inFlight map[profiles.Key]int

	sentMu  sync.Mutex
	sent    map[scep.TransactionID]sendRecord // what this process sent, and the answers
	touched map[types.UID]time.Time           // requests this process sent for or finished
}

func (s *Signer) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}

// StartLeading records that this process now enrolls (it became the leader,
// or runs alone). A request created before then may have been sent by the
// process that led before, whose answer is lost: it is asked about with a
// CertPoll before any PKCSReq. Requests created later were never seen by
// another leader and are sent at once.
func (s *Signer) StartLeading(t time.Time) {
	s.leadMu.Lock()
	defer s.leadMu.Unlock()
	s.leadingSince = t
}

// LeadingSince is when this process started to enroll; zero before.
func (s *Signer) LeadingSince() time.Time {
	s.leadMu.Lock()
	defer s.leadMu.Unlock()
	return s.leadingSince
}

// createdWhileLeading says whether obj was created after this process
// started leading. creationTimestamp has whole seconds: a request of the
// same second counts as older, which costs at most one CertPoll.
func (s *Signer) createdWhileLeading(obj metav1.Object) bool {
	s.leadMu.Lock()
	defer s.leadMu.Unlock()
	created := obj.GetCreationTimestamp()
	return !s.leadingSince.IsZero() && created.After(s.leadingSince)
}

// settings are the profile's retry knobs with defaults applied.
type settings struct {
	maxAttempts      int
	retryInterval    time.Duration
	maxRetryInterval time.Duration
	pendingTimeout   time.Duration
}

func settingsOf(spec *scepv1alpha1.SCEPProfileSpec) settings {
	st := settings{defaultMaxAttempts, defaultRetryInterval, defaultMaxRetryInterval, defaultPendingTimeout}
	if spec.MaxAttempts > 0 {
		st.maxAttempts = int(spec.MaxAttempts)
	}
	if spec.RetryInterval != nil && spec.RetryInterval.Duration > 0 {
		st.retryInterval = spec.RetryInterval.Duration
	}
	if spec.MaxRetryInterval != nil && spec.MaxRetryInterval.Duration > 0 {
		st.maxRetryInterval = spec.MaxRetryInterval.Duration
	}
	if spec.PendingTimeout != nil && spec.PendingTimeout.Duration > 0 {
		st.pendingTimeout = spec.PendingTimeout.Duration
	}
	return st
}

// Backoff is the wait after the n-th failed attempt (n >= 1): retryInterval
// doubled n-1 times, capped at maxRetryInterval, then spread by up to ±10%.
func Backoff(retryInterval, maxRetryInterval time.Duration, n int, rnd func() float64) time.Duration {
	d := retryInterval
	for i := 1; i < n && d < maxRetryInterval; i++ {
		d *= 2
	}
	if d > maxRetryInterval {
		d = maxRetryInterval
	}
	if rnd != nil {
		d = time.Duration(float64(d) * (0.9 + 0.2*rnd()))
	}
	return d
}

// Sign enrolls one CertificateRequest. issuer-lib calls it only for
// Approved requests of a Ready profile.
func (s *Signer) Sign(ctx context.Context, cro signer.CertificateRequestObject, issuer issuerapi.Issuer) (signer.PEMBundle, error) {
	return s.sign(ctx, certificateRequest{&cmapi.CertificateRequest{}}, cro, issuer)
}

// SignCertificateSigningRequest enrolls one Kubernetes
// CertificateSigningRequest, as Sign does a CertificateRequest. issuer-lib
// calls it only for Approved requests of a Ready profile.
func (s *Signer) SignCertificateSigningRequest(ctx context.Context, cro signer.CertificateRequestObject, issuer issuerapi.Issuer) (signer.PEMBundle, error) {
	return s.sign(ctx, kubeCSR{&certificatesv1.CertificateSigningRequest{}}, cro, issuer)
}

// sign enrolls cro, read into req.
func (s *Signer) sign(ctx context.Context, req request, cro signer.CertificateRequestObject, issuer issuerapi.Issuer) (signer.PEMBundle, error) {
	p, ok := issuer.(scepv1alpha1.Profile)
	if !ok {
		return signer.PEMBundle{}, signer.PermanentError{Err: fmt.Errorf("unexpected issuer type %T", issuer)}
	}
	obj := req.object()
	key := client.ObjectKey{Namespace: cro.GetNamespace(), Name: cro.GetName()}
	// The cached copy is enough for a request this process has not acted
	// on yet. Once it has (sent a PKCSReq, written state, finished it), the
	// request is read fresh, so that a cache lagging behind an earlier call
	// never makes it enroll twice. This saves a quorum read of the API
	// server per enrollment.
	if err := s.Client.Get(ctx, key, obj); err != nil || s.needsFreshRead(req) {
		if err := s.APIReader.Get(ctx, key, obj); err != nil {
			return signer.PEMBundle{}, fmt.Errorf("reading the %s: %w", req.kind(), err)
		}
	}
	// issuer-lib read the request from its cache, which may not show yet
	// that an earlier call finished it; never enroll a finished request twice.
	if bundle, done, failure := req.finished(); done {
		if failure != nil {
			return signer.PEMBundle{}, signer.PermanentError{Err: failure}
		}
		return bundle, nil
	}
	e := &enrollment{Signer: s, ctx: ctx, p: p, key: profiles.KeyOf(p), req: req, cfg: settingsOf(p.GetSpec())}
	e.log = log.FromContext(ctx).WithValues("profile", e.key.String())
	bundle, err := e.run()
	s.trackPending(req, e.key, stillPending(e.st, err))
	return bundle, err
}

// needsFreshRead says whether a cached request must be read again from the
// API server before Sign acts on it: this process acted on it before, it
// carries state, or it looks finished.
func (s *Signer) needsFreshRead(req request) bool {
	if req.object().GetAnnotations()[AnnotationState] != "" || s.touchedRequest(req.object().GetUID()) {
		return true
	}
	return req.looksFinished()
}

// failedPrefix is what issuer-lib puts before a permanent error's message.
const failedPrefix = "Failed permanently to sign CertificateRequest: "

func readyCondition(cr *cmapi.CertificateRequest) *cmapi.CertificateRequestCondition {
	for i := range cr.Status.Conditions {
		if cr.Status.Conditions[i].Type == cmapi.CertificateRequestConditionReady {
			return &cr.Status.Conditions[i]
		}
	}
	return nil
}
