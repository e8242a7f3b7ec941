// Package signer is what issuer-lib calls to enroll one CertificateRequest
// over SCEP: policy first, then the transaction state persisted on the
// request, then the SCEP client. Its errors carry the decision, as
// issuer-lib expects: PendingError (wait, poll or back off; nothing is
// spent), PermanentError (the request fails), anything else (retried by
// issuer-lib's backoff within MaxRetryDuration).
package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/ndes"
	"github.com/scep-operator/scep-operator/internal/pemkey"
	"github.com/scep-operator/scep-operator/internal/policy"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
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
)

// Defaults for spec fields a client left out (the API server defaults them).
const (
	defaultMaxAttempts      = 5
	defaultRetryInterval    = 30 * time.Second
	defaultMaxRetryInterval = 10 * time.Minute
	defaultPendingTimeout   = 24 * time.Hour
)

// Signer enrolls CertificateRequests for SCEPProfiles and ClusterSCEPProfiles.
type Signer struct {
	// Client patches the transaction annotations of CertificateRequests.
	Client client.Client
	// APIReader reads CertificateRequests (fresh, never a stale cache, so a
	// persisted transaction is always seen), Certificates and Secrets.
	APIReader client.Reader
	// Registry gives each profile's SCEP client and cached server answer.
	Registry *profiles.Registry
	// ClusterDomain is %domainname%.
	ClusterDomain string
	// Recorder emits Events on CertificateRequests.
	Recorder events.EventRecorder
	// Clock is the time source; nil means the real clock.
	Clock clock.Clock

	pendingMu sync.Mutex
	pending   map[string]string // request key -> profile key

	flightMu sync.Mutex
	inFlight map[profiles.Key]int

	sentMu sync.Mutex
	sent   map[scep.TransactionID]bool // PKCSReqs this process sent -> answered
}

// sendOutcome says what this process knows of a transaction's last PKCSReq.
type sendOutcome int

const (
	// notSentHere: another process (before a restart, or the replica that
	// led before) sent it, perhaps; the reply may be lost.
	notSentHere sendOutcome = iota
	// sentUnanswered: sent, but no HTTP answer came (connection lost,
	// timeout): the server may have acted on it.
	sentUnanswered
	// sentAnswered: the server answered it (even if with an error).
	sentAnswered
)

func (s *Signer) sendOutcome(tx scep.TransactionID) sendOutcome {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	answered, ok := s.sent[tx]
	switch {
	case !ok:
		return notSentHere
	case answered:
		return sentAnswered
	}
	return sentUnanswered
}

func (s *Signer) recordSend(tx scep.TransactionID, answered bool) {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	if s.sent == nil {
		s.sent = map[scep.TransactionID]bool{}
	}
	s.sent[tx] = answered
}

func (s *Signer) forgetSend(tx scep.TransactionID) {
	s.sentMu.Lock()
	delete(s.sent, tx)
	s.sentMu.Unlock()
}

// answered reports whether the outcome of sending a pkiMessage is known:
// the server answered (an HTTP status, a reply good or bad, a FAILURE) or
// the request never left (refused at dial). Anything else (a connection
// lost, a timeout) leaves open whether the server acted on it.
func answered(err error) bool {
	var (
		httpErr    *scepclient.HTTPError
		contentErr *scepclient.ContentError
		tooLong    *scepclient.QueryTooLongError
		reply      *scep.ReplyError
		failure    *scep.FailureError
		opErr      *net.OpError
	)
	switch {
	case err == nil, errors.As(err, &httpErr), errors.As(err, &contentErr), errors.As(err, &tooLong),
		errors.As(err, &reply), errors.As(err, &failure):
		return true
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return true
	}
	return false
}

// defaultMaxConcurrentRequests applies when a client left the field out.
const defaultMaxConcurrentRequests = 4

// acquire takes one of the profile's maxConcurrentRequests slots; false
// means all are taken and the caller should come back shortly.
func (s *Signer) acquire(key profiles.Key, limit int32) bool {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	if s.inFlight == nil {
		s.inFlight = map[profiles.Key]int{}
	}
	if s.inFlight[key] >= int(limit) {
		return false
	}
	s.inFlight[key]++
	return true
}

// slotWait is how long Sign waits in its worker for one of the profile's
// request slots before handing the request back to the queue. Handing it
// back at once made every waiting request a reconcile, a status patch and a
// Warning Event (issuer-lib writes both for each PendingError) every few
// hundred milliseconds: in a burst, a storm of API writes that slowed the
// enrollments themselves. Waiting here leaves the rest of a burst queued,
// untouched; other profiles' requests still get a worker within slotWait.
const slotWait = time.Second

// acquireWithin is acquire, retried every few milliseconds for up to wait.
func (s *Signer) acquireWithin(ctx context.Context, key profiles.Key, limit int32, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for !s.acquire(key, limit) {
		if !time.Now().Before(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Duration(5+rand.IntN(10)) * time.Millisecond):
		}
	}
	return true
}

func (s *Signer) release(key profiles.Key) {
	s.flightMu.Lock()
	s.inFlight[key]--
	s.flightMu.Unlock()
}

func (s *Signer) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
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

// Sign enrolls one request. issuer-lib calls it only for Approved requests
// of a Ready profile.
func (s *Signer) Sign(ctx context.Context, cro signer.CertificateRequestObject, issuer issuerapi.Issuer) (signer.PEMBundle, error) {
	p, ok := issuer.(scepv1alpha1.Profile)
	if !ok {
		return signer.PEMBundle{}, signer.PermanentError{Err: fmt.Errorf("unexpected issuer type %T", issuer)}
	}
	cr := &cmapi.CertificateRequest{}
	key := client.ObjectKey{Namespace: cro.GetNamespace(), Name: cro.GetName()}
	// The cached copy is enough to start a transaction: persist writes its
	// state under an optimistic lock before anything is sent, so a stale copy
	// (one an earlier call already finished) fails with a conflict first. A
	// request that carries a transaction or is finished is read fresh, since
	// resuming sends without that write. This saves a quorum read of the API
	// server per enrollment.
	if err := s.Client.Get(ctx, key, cr); err != nil || needsFreshRead(cr) {
		if err := s.APIReader.Get(ctx, key, cr); err != nil {
			return signer.PEMBundle{}, fmt.Errorf("reading the CertificateRequest: %w", err)
		}
	}
	// issuer-lib read the request from its cache, which may not show yet
	// that an earlier call finished it; never enroll a finished request twice.
	if ready := readyCondition(cr); ready != nil {
		switch {
		case ready.Status == cmmeta.ConditionTrue && len(cr.Status.Certificate) > 0:
			return signer.PEMBundle{ChainPEM: cr.Status.Certificate, CAPEM: cr.Status.CA}, nil
		case ready.Reason == cmapi.CertificateRequestReasonFailed:
			// issuer-lib prefixes the message again when it applies it.
			return signer.PEMBundle{}, signer.PermanentError{Err: errors.New(strings.TrimPrefix(ready.Message, failedPrefix))}
		}
	}
	e := &enrollment{Signer: s, ctx: ctx, p: p, key: profiles.KeyOf(p), cr: cr, st: readState(cr), cfg: settingsOf(p.GetSpec())}
	e.log = log.FromContext(ctx).WithValues("profile", e.key.String())
	bundle, err := e.run()
	s.trackPending(cr, e.key, e.st.Phase == StatePending && err != nil && isPending(err))
	return bundle, err
}

// needsFreshRead says whether a cached request must be read again from the
// API server before Sign acts on it: it carries a transaction (resumed
// without a guarding write) or it looks finished.
func needsFreshRead(cr *cmapi.CertificateRequest) bool {
	if cr.Annotations[AnnotationTransactionID] != "" {
		return true
	}
	ready := readyCondition(cr)
	return ready != nil && (ready.Status == cmmeta.ConditionTrue || ready.Reason == cmapi.CertificateRequestReasonFailed)
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

func isPending(err error) bool {
	var pe signer.PendingError
	return errors.As(err, &pe)
}

// trackPending keeps the scep_pending_requests gauge: requests answered
// PENDING and still being polled.
func (s *Signer) trackPending(cr *cmapi.CertificateRequest, key profiles.Key, pending bool) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if s.pending == nil {
		s.pending = map[string]string{}
	}
	id := cr.Namespace + "/" + cr.Name
	_, was := s.pending[id]
	if pending == was {
		return
	}
	if pending {
		s.pending[id] = key.String()
		metrics.Pending.WithLabelValues(key.String()).Inc()
	} else {
		delete(s.pending, id)
		metrics.Pending.WithLabelValues(key.String()).Dec()
	}
}

// enrollment is one call of Sign.
type enrollment struct {
	*Signer
	ctx context.Context
	log interface {
		Info(msg string, kv ...any)
	}
	p   scepv1alpha1.Profile
	key profiles.Key
	cr  *cmapi.CertificateRequest
	st  state
	cfg settings
	// polling: the pkiMessage to build is a CertPoll, which carries no CSR
	// (so no challenge password is spent on it).
	polling bool
	// sent describes the PKCSReq this call sent, for the outcome's Event.
	sent string
}

func (e *enrollment) pendingf(after time.Duration, format string, args ...any) error {
	return signer.PendingError{Err: fmt.Errorf(format, args...), RequeueAfter: after}
}

func (e *enrollment) fail(result string, err error) error {
	e.forgetSend(e.st.TransactionID)
	metrics.Enrollments.WithLabelValues(e.key.String(), result).Inc()
	return signer.PermanentError{Err: err}
}

func (e *enrollment) run() (signer.PEMBundle, error) {
	now := e.now()
	if wait := e.st.NextAttempt.Sub(now); wait > 0 {
		what := "the next attempt"
		if e.st.Phase == StatePending {
			what = "the next CertPoll"
		}
		msg := fmt.Sprintf("waiting %s for %s", wait.Round(time.Second), what)
		if e.st.LastError != "" && e.st.Phase != StatePending {
			msg += fmt.Sprintf(" (attempt %d/%d failed: %s)", e.st.FailedAttempts, e.cfg.maxAttempts, e.st.LastError)
		}
		if strings.HasPrefix(e.st.LastError, cacheFullPrefix) {
			return signer.PEMBundle{}, cacheFullCondition(e.pendingf(wait, "%s", msg))
		}
		return signer.PEMBundle{}, e.pendingf(wait, "%s", msg)
	}

	block, _ := pem.Decode(e.cr.Spec.Request)
	if block == nil {
		return signer.PEMBundle{}, e.fail(metrics.ResultPolicy, errors.New("spec.request holds no PEM certificate request"))
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return signer.PEMBundle{}, e.fail(metrics.ResultPolicy, fmt.Errorf("spec.request holds a PEM %q block, not a CERTIFICATE REQUEST", block.Type))
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return signer.PEMBundle{}, e.fail(metrics.ResultPolicy, fmt.Errorf("spec.request is not a PKCS#10 certificate request: %w", err))
	}
	if err := csr.CheckSignature(); err != nil {
		return signer.PEMBundle{}, e.fail(metrics.ResultPolicy, fmt.Errorf("spec.request is not signed by its own key: %w", err))
	}
	if e.st.TransactionID == "" {
		if err := policy.Check(e.p.GetSpec(), csr, policy.VariablesFor(e.cr, e.ClusterDomain)); err != nil {
			e.Recorder.Eventf(e.cr, e.p, corev1.EventTypeWarning, EventPolicyViolation, "Sign", "%v; nothing was sent to the SCEP server", err)
			return signer.PEMBundle{}, e.fail(metrics.ResultPolicy, err)
		}
	}

	// Bound what this profile has in flight at the server; the rest wait
	// (PendingError spends no attempt) and come back after a short pause.
	limit := e.p.GetSpec().MaxConcurrentRequests
	if limit <= 0 {
		limit = defaultMaxConcurrentRequests
	}
	if !e.acquireWithin(e.ctx, e.key, limit, slotWait) {
		return signer.PEMBundle{}, e.pendingf(time.Duration(200+rand.IntN(300))*time.Millisecond, "waiting for one of the profile's %d request slots (maxConcurrentRequests)", limit)
	}
	defer e.release(e.key)

	c, info, err := e.Registry.ServerInfo(e.ctx, e.p)
	if err != nil {
		return signer.PEMBundle{}, e.failedAttempt("asking the SCEP server for its capabilities and certificates", err)
	}
	if e.st.Phase == StateSending && e.sendOutcome(e.st.TransactionID) != sentAnswered {
		if rep, ok := e.resume(c, info, csr); ok {
			return e.outcome(rep, nil)
		}
	}
	sg, csrDER, err := e.prepare(csr)
	if err != nil {
		return signer.PEMBundle{}, err
	}

	var rep *scep.CertRep
	if e.st.Phase == StatePending {
		rep, err = c.CertPoll(e.ctx, info, sg, e.st.TransactionID, csr.RawSubject)
	} else {
		if e.st.TransactionID == "" {
			if e.st.TransactionID, err = scep.NewTransactionID(nil); err != nil {
				return signer.PEMBundle{}, err
			}
			e.st.SignerCert, e.st.Phase = sg.Certificate, StateSending
			// Persist before sending: a restart from here resumes this
			// transaction rather than starting another.
			if err := e.persist(); err != nil {
				return signer.PEMBundle{}, err
			}
		}
		msg, merr := scep.NewPKCSReq(csrDER, info.MessageOptions(sg, e.st.TransactionID))
		if merr != nil {
			return signer.PEMBundle{}, e.fail(metrics.ResultFailed, fmt.Errorf("building the PKCSReq: %w", merr))
		}
		// What was sent goes into the outcome's Event (issued, pending,
		// rejected, retrying) rather than an Event of its own: one Event
		// write per enrollment fewer for the API server.
		e.sent = fmt.Sprintf("PKCSReq sent to %s (transaction %s, %s)", e.p.GetSpec().URL, e.st.TransactionID, info.Algorithms)
		e.recordSend(e.st.TransactionID, false)
		rep, err = c.Send(e.ctx, info, msg)
		e.recordSend(e.st.TransactionID, answered(err))
	}
	return e.outcome(rep, err)
}

// resume asks the server, with a CertPoll, about a transaction whose
// PKCSReq may have reached it without the answer reaching us: this process
// restarted (or took over as leader) after persisting the transaction, or
// the last attempt lost its connection. A server that remembers the
// transaction (NDES, EJBCA) answers with the certificate or PENDING, and
// enrolling again would issue twice. ok is false when the server does not
// know the transaction or cannot poll (MicroMDM and step-ca answer HTTP 500
// "not implemented"): the caller sends the PKCSReq again, with the same
// transactionID. The poll carries no CSR, so it spends no challenge.
func (e *enrollment) resume(c *scepclient.Client, info *scepclient.ServerInfo, csr *x509.CertificateRequest) (*scep.CertRep, bool) {
	e.polling = true
	sg, _, err := e.prepare(csr)
	e.polling = false
	if err != nil {
		return nil, false // prepare fails the same way again below, and says why
	}
	rep, err := c.CertPoll(e.ctx, info, sg, e.st.TransactionID, csr.RawSubject)
	if err != nil {
		e.log.Info("the SCEP server could not tell about the transaction; sending the PKCSReq again", "request", e.cr.Namespace+"/"+e.cr.Name, "transaction", string(e.st.TransactionID), "answer", err.Error())
		return nil, false
	}
	e.Recorder.Eventf(e.cr, e.p, corev1.EventTypeNormal, EventResumed, "Sign", "the SCEP server knew transaction %s (%s): resumed without enrolling again", e.st.TransactionID, rep.Status)
	return rep, true
}

// sentPrefix starts an outcome's Event with what this call sent, if anything.
func (e *enrollment) sentPrefix() string {
	if e.sent == "" {
		return ""
	}
	return e.sent + ": "
}

// outcome turns the server's answer into issuer-lib's result.
func (e *enrollment) outcome(rep *scep.CertRep, err error) (signer.PEMBundle, error) {
	var failure *scep.FailureError
	switch {
	case errors.As(err, &failure):
		e.Recorder.Eventf(e.cr, e.p, corev1.EventTypeWarning, EventRejected, "Sign", "%s%v (transaction %s)", e.sentPrefix(), failure, e.st.TransactionID)
		return signer.PEMBundle{}, e.fail(metrics.ResultRejected, fmt.Errorf("%s: %w", e.p.GetSpec().URL, err))
	case err != nil:
		var reply *scep.ReplyError
		if errors.As(err, &reply) && reply.Reason == "BadSignature" {
			// Perhaps the CA rolled over: ask GetCACert again next time,
			// and have the profile's status show what the server serves.
			e.Registry.Forget(e.key)
			e.Registry.Recheck(e.p)
		}
		return signer.PEMBundle{}, e.failedAttempt("enrolling", err)
	case rep.Status == scep.StatusPending:
		now := e.now()
		first := e.st.Phase != StatePending
		if e.st.PendingSince.IsZero() {
			e.st.PendingSince = now
		}
		if now.Sub(e.st.PendingSince) > e.cfg.pendingTimeout {
			return signer.PEMBundle{}, e.fail(metrics.ResultFailed, fmt.Errorf("the SCEP server has answered PENDING since %s, longer than pendingTimeout %s (transaction %s): approve or reject it on the CA", e.st.PendingSince.UTC().Format(time.RFC3339), e.cfg.pendingTimeout, e.st.TransactionID))
		}
		e.st.Phase, e.st.NextAttempt, e.st.LastError = StatePending, now.Add(e.cfg.retryInterval), ""
		if err := e.persist(); err != nil {
			return signer.PEMBundle{}, err
		}
		if first {
			e.Recorder.Eventf(e.cr, e.p, corev1.EventTypeNormal, EventPending, "Sign", "%sthe SCEP server answered PENDING (transaction %s); polling every %s for up to %s", e.sentPrefix(), e.st.TransactionID, e.cfg.retryInterval, e.cfg.pendingTimeout)
		}
		return signer.PEMBundle{}, e.pendingf(e.cfg.retryInterval, "the SCEP server answered PENDING (transaction %s, waiting for approval on the CA since %s)", e.st.TransactionID, e.st.PendingSince.UTC().Format(time.RFC3339))
	}
	bundle, err := bundleOf(rep.Certificates)
	if err != nil {
		return signer.PEMBundle{}, e.fail(metrics.ResultFailed, err)
	}
	e.forgetSend(e.st.TransactionID)
	metrics.Enrollments.WithLabelValues(e.key.String(), metrics.ResultIssued).Inc()
	metrics.EnrollmentDuration.WithLabelValues(e.key.String()).Observe(e.now().Sub(e.cr.CreationTimestamp.Time).Seconds())
	e.Recorder.Eventf(e.cr, e.p, corev1.EventTypeNormal, EventIssued, "Sign", "%sissued by %q, serial %s (transaction %s)", e.sentPrefix(), rep.Certificates[0].Issuer.String(), rep.Certificates[0].SerialNumber.Text(16), e.st.TransactionID)
	e.log.Info("certificate issued", "request", e.cr.Namespace+"/"+e.cr.Name, "transaction", string(e.st.TransactionID), "serial", rep.Certificates[0].SerialNumber.Text(16))
	return bundle, nil
}

// failedAttempt counts a failed attempt and schedules the next one, or
// fails the request once maxAttempts is reached. Permanent errors (a query
// too long for GET, a CA pin mismatch found while enrolling) are handled too.
func (e *enrollment) failedAttempt(what string, err error) error {
	var mismatch *scep.FingerprintMismatchError
	var secret *profiles.SecretError
	var spec *profiles.SpecError
	switch {
	case errors.As(err, &mismatch), errors.As(err, &secret), errors.As(err, &spec):
		// The profile is wrong, not the request: wait for the profile to be
		// fixed (its controller reports it), spending no attempt.
		e.Registry.Forget(e.key)
		return e.pendingf(e.cfg.retryInterval, "%s: %v", what, err)
	case errors.Is(err, context.Canceled):
		return err
	case !scepclient.IsTransient(err):
		return e.fail(metrics.ResultFailed, fmt.Errorf("%s with %s: %w", what, e.p.GetSpec().URL, err))
	}
	e.st.FailedAttempts++
	e.st.LastError = shorten(err.Error(), 300)
	if e.st.FailedAttempts >= e.cfg.maxAttempts {
		return e.fail(metrics.ResultFailed, fmt.Errorf("%s with %s failed %d times (maxAttempts); last error: %w", what, e.p.GetSpec().URL, e.st.FailedAttempts, err))
	}
	wait := Backoff(e.cfg.retryInterval, e.cfg.maxRetryInterval, e.st.FailedAttempts, rand.Float64)
	var httpErr *scepclient.HTTPError
	if errors.As(err, &httpErr) && httpErr.RetryAfter > wait && httpErr.RetryAfter <= e.cfg.maxRetryInterval {
		wait = httpErr.RetryAfter
	}
	e.st.NextAttempt = e.now().Add(wait)
	if perr := e.persist(); perr != nil {
		return perr
	}
	e.Recorder.Eventf(e.cr, e.p, corev1.EventTypeWarning, EventRetrying, "Sign", "%sattempt %d/%d failed, next in %s: %s", e.sentPrefix(), e.st.FailedAttempts, e.cfg.maxAttempts, wait.Round(time.Second), e.st.LastError)
	return e.pendingf(wait, "attempt %d/%d failed, retrying in %s: %v", e.st.FailedAttempts, e.cfg.maxAttempts, wait.Round(time.Second), err)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// persist writes the transaction state onto the request, refusing to
// overwrite a concurrent change (optimistic lock on resourceVersion).
func (e *enrollment) persist() error {
	orig := e.cr.DeepCopy()
	e.st.write(e.cr)
	if err := e.Client.Patch(e.ctx, e.cr, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("recording the SCEP transaction on the CertificateRequest: %w", err)
	}
	return nil
}

// prepare returns who signs the pkiMessage and the CSR to send (none for
// a CertPoll: no CSR is rebuilt and no challenge, perhaps a one-time
// password, is spent on it).
func (e *enrollment) prepare(csr *x509.CertificateRequest) (*scep.Signer, []byte, error) {
	spec := e.p.GetSpec()
	if spec.CSRMode != scepv1alpha1.CSRModeRebuild {
		sg, err := e.profileSigner()
		return sg, csr.Raw, err
	}
	key, err := e.workloadKey(csr)
	if err != nil {
		return nil, nil, err
	}
	var sg *scep.Signer
	if rk, ok := key.(*rsa.PrivateKey); ok {
		// RFC 8894: the request's own key signs, with a self-signed
		// certificate; a resumed transaction keeps its certificate.
		if e.st.SignerCert != nil && rk.PublicKey.Equal(e.st.SignerCert.PublicKey) {
			sg = &scep.Signer{Certificate: e.st.SignerCert, Key: rk}
		} else if sg, err = scep.NewSelfSignedSigner(rk, csr.RawSubject, 7*24*time.Hour); err != nil {
			return nil, nil, err
		}
	} else if sg, err = e.profileSigner(); err != nil {
		// An ECDSA key cannot receive the enveloped reply.
		return nil, nil, err
	}
	if e.buildsCertPoll() {
		return sg, nil, nil // a CertPoll carries no CSR
	}
	challenge, err := e.challenge()
	if err != nil {
		return nil, nil, err
	}
	tmpl := scep.TemplateFromCSR(csr)
	tmpl.ChallengePassword = challenge
	der, err := scep.NewCSR(tmpl, key)
	if err != nil {
		return nil, nil, e.fail(metrics.ResultFailed, fmt.Errorf("rebuilding the CSR: %w", err))
	}
	return sg, der, nil
}

// buildsCertPoll says whether the pkiMessage this call builds is a
// CertPoll (the transaction is PENDING, or resume asks about it), which
// needs the signer but no CSR and no challenge.
func (e *enrollment) buildsCertPoll() bool {
	return e.st.Phase == StatePending || e.polling
}

// profileSigner loads the profile's RSA signer; a resumed transaction must
// find the same key it started with.
func (e *enrollment) profileSigner() (*scep.Signer, error) {
	sg, err := e.Registry.LoadSigner(e.ctx, e.p)
	if err == nil && e.st.SignerCert != nil && !sg.Key.PublicKey.Equal(e.st.SignerCert.PublicKey) {
		// LoadSigner may have answered from its cache: look at the Secret.
		e.Registry.ForgetSigner(e.key)
		sg, err = e.Registry.LoadSigner(e.ctx, e.p)
	}
	if err != nil {
		return nil, e.pendingf(e.cfg.retryInterval, "%v", err)
	}
	if e.st.SignerCert != nil {
		if !sg.Key.PublicKey.Equal(e.st.SignerCert.PublicKey) {
			return nil, e.fail(metrics.ResultFailed, errors.New("the profile's signer key changed while this transaction was in flight; the reply cannot be decrypted: delete the CertificateRequest to start over"))
		}
		sg = &scep.Signer{Certificate: e.st.SignerCert, Key: sg.Key}
	}
	return sg, nil
}

// workloadKey reads the Certificate's pending private key (Rebuild mode) and
// checks that it is the CSR's.
func (e *enrollment) workloadKey(csr *x509.CertificateRequest) (crypto.Signer, error) {
	certName := e.cr.Annotations[cmapi.CertificateNameKey]
	if certName == "" {
		return nil, e.fail(metrics.ResultPolicy, errors.New("csrMode Rebuild needs a request made by a Certificate (annotation cert-manager.io/certificate-name), whose pending private key it reads"))
	}
	var cert cmapi.Certificate
	if err := e.APIReader.Get(e.ctx, client.ObjectKey{Namespace: e.cr.Namespace, Name: certName}, &cert); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, e.fail(metrics.ResultFailed, fmt.Errorf("the request's Certificate %s/%s does not exist", e.cr.Namespace, certName))
		}
		return nil, fmt.Errorf("reading Certificate %s/%s: %w", e.cr.Namespace, certName, err)
	}
	name := ""
	if cert.Status.NextPrivateKeySecretName != nil {
		name = *cert.Status.NextPrivateKeySecretName
	}
	if name == "" {
		return nil, e.pendingf(e.cfg.retryInterval, "Certificate %s/%s has no status.nextPrivateKeySecretName yet", e.cr.Namespace, certName)
	}
	var sec corev1.Secret
	if err := e.APIReader.Get(e.ctx, client.ObjectKey{Namespace: e.cr.Namespace, Name: name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, e.pendingf(e.cfg.retryInterval, "the pending private key Secret %s/%s does not exist yet", e.cr.Namespace, name)
		}
		if apierrors.IsForbidden(err) {
			return nil, e.pendingf(e.cfg.retryInterval, "the operator may not read Secret %s/%s: grant it Rebuild access to namespace %s (Helm value rebuild.namespaces)", e.cr.Namespace, name, e.cr.Namespace)
		}
		return nil, fmt.Errorf("reading the pending private key Secret: %w", err)
	}
	key, err := pemkey.Parse(sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, e.fail(metrics.ResultFailed, fmt.Errorf("the pending private key Secret %s/%s: tls.key %w", e.cr.Namespace, name, err))
	}
	if !publicKeysEqual(key.Public(), csr.PublicKey) {
		return nil, e.fail(metrics.ResultPolicy, fmt.Errorf("the pending private key in Secret %s/%s does not match the request's CSR; nothing was sent", e.cr.Namespace, name))
	}
	return key, nil
}

// challenge returns the challenge password for Rebuild mode. It is never
// logged, put in an Event, a status or an error.
func (e *enrollment) challenge() (string, error) {
	ch := e.p.GetSpec().Challenge
	switch ch.Type {
	case scepv1alpha1.ChallengeStatic:
		v, err := e.Registry.ReadSecretKey(e.ctx, e.Registry.SecretNamespace(e.p), *ch.PasswordSecretRef, "password")
		if err != nil {
			return "", e.pendingf(e.cfg.retryInterval, "reading the challenge password: %v", err)
		}
		return strings.TrimRight(string(v), "\r\n"), nil
	case scepv1alpha1.ChallengeDynamic:
		// NDES passwords are single-use: a fresh one for every attempt.
		pw, err := e.Registry.DynamicPassword(e.ctx, e.p)
		switch {
		case err == nil:
			return pw, nil
		case ndes.IsCacheFull(err):
			return "", e.passwordCacheFull(err)
		case ndes.IsAuthError(err):
			// The profile, not the request, is wrong: the profile controller
			// shows CredentialsRejected; the request waits, spending nothing.
			return "", e.pendingf(e.cfg.retryInterval, "NDES refused the profile's admin credentials (see the profile's Ready condition): %v", err)
		}
		return "", e.failedAttempt("fetching the NDES challenge password", err)
	}
	return "", nil
}

// ConditionChallenge is the CertificateRequest condition that says why a
// challenge could not be had; reason PasswordCacheFull for NDES's full cache.
const (
	ConditionChallenge      = "SCEPChallenge"
	ReasonPasswordCacheFull = "PasswordCacheFull"
)

// passwordCacheFull counts an attempt and waits retryInterval: NDES keeps a
// few unused passwords (5 by default) for an hour and refuses more.
func (e *enrollment) passwordCacheFull(err error) error {
	e.st.FailedAttempts++
	e.st.LastError = shorten(cacheFullPrefix+err.Error(), 300)
	if e.st.FailedAttempts >= e.cfg.maxAttempts {
		return e.fail(metrics.ResultFailed, fmt.Errorf("NDES's password cache stayed full for %d attempts (maxAttempts): %w", e.st.FailedAttempts, err))
	}
	e.st.NextAttempt = e.now().Add(e.cfg.retryInterval)
	if perr := e.persist(); perr != nil {
		return perr
	}
	e.Recorder.Eventf(e.cr, e.p, corev1.EventTypeWarning, ReasonPasswordCacheFull, "Sign", "NDES's password cache is full (attempt %d/%d); trying again in %s", e.st.FailedAttempts, e.cfg.maxAttempts, e.cfg.retryInterval)
	return cacheFullCondition(e.pendingf(e.cfg.retryInterval, "NDES's password cache is full: waiting %s (attempt %d/%d); unused passwords expire after 60 minutes, or raise PasswordMax on NDES", e.cfg.retryInterval, e.st.FailedAttempts, e.cfg.maxAttempts))
}

// cacheFullPrefix marks LastError when the last attempt met a full cache, so
// the waits that follow keep the condition: issuer-lib applies the request's
// status server-side, and a condition not sent again is removed.
const cacheFullPrefix = ReasonPasswordCacheFull + ": "

func cacheFullCondition(err error) error {
	return signer.SetCertificateRequestConditionError{Err: err, ConditionType: ConditionChallenge, Status: cmmeta.ConditionFalse, Reason: ReasonPasswordCacheFull}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	switch k := a.(type) {
	case *rsa.PublicKey:
		return k.Equal(b)
	case *ecdsa.PublicKey:
		return k.Equal(b)
	}
	return false
}

// bundleOf turns the chain (leaf first) into issuer-lib's PEM bundle: the
// chain without a self-signed root, and that root (or the last issuer) as CA.
func bundleOf(chain []*x509.Certificate) (signer.PEMBundle, error) {
	if len(chain) == 0 {
		return signer.PEMBundle{}, errors.New("the server returned no certificate")
	}
	var b signer.PEMBundle
	for i, c := range chain {
		p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		selfSigned := string(c.RawIssuer) == string(c.RawSubject)
		if i > 0 && selfSigned {
			b.CAPEM = p
			break
		}
		b.ChainPEM = append(b.ChainPEM, p...)
		if i == len(chain)-1 && i > 0 {
			b.CAPEM = p
		}
	}
	return b, nil
}
