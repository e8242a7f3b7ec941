package signer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// enrollment is one call of Sign.
type enrollment struct {
	*Signer
	ctx context.Context
	log interface {
		Info(msg string, kv ...any)
	}
	p   scepv1alpha1.Profile
	key profiles.Key
	req request
	cfg settings
	// st is the request's sealed state (zero when none or not authentic).
	st State
	// tx is the transactionID, derived from the request's UID and key.
	tx scep.TransactionID
	// polling: the pkiMessage to build is a CertPoll, which carries no CSR
	// (so no challenge password is spent on it).
	polling bool
	// sent describes the PKCSReq this call sent, for the outcome's Event.
	sent string
	// algorithms are those this call's messages are built with, for the
	// issued-by-algorithm metric.
	algorithms scep.Algorithms
	// server is the SCEP server this call talks to (url or a failoverURLs
	// entry).
	server string
	// renewing: the pkiMessage is a RenewalReq (or a CertPoll of one),
	// signed with the Certificate's current certificate; notRenewal says
	// why a renewal-enabled profile sent a PKCSReq instead.
	renewing   bool
	notRenewal string
}

// obj is the request's API object.
func (e *enrollment) obj() client.Object { return e.req.object() }

func (e *enrollment) pendingf(after time.Duration, format string, args ...any) error {
	return signer.PendingError{Err: fmt.Errorf(format, args...), RequeueAfter: after}
}

func (e *enrollment) fail(result string, err error) error {
	e.forgetSend(e.obj().GetUID(), e.tx)
	metrics.Enrollments.WithLabelValues(e.key.String(), result).Inc()
	return signer.PermanentError{Err: err}
}

func (e *enrollment) run() (signer.PEMBundle, error) {
	csr, err := e.parseCSR()
	if err != nil {
		return signer.PEMBundle{}, err
	}
	if err := e.admit(csr); err != nil {
		return signer.PEMBundle{}, err
	}
	e.tx = scep.DeriveTransactionID(string(e.obj().GetUID()), csr.RawSubjectPublicKeyInfo)
	if e.st, err = e.open(e.obj()); err != nil {
		e.Recorder.Eventf(e.obj(), e.p, corev1.EventTypeWarning, EventStateIgnored, "Sign", "ignored annotation %s: %v; starting from no state", AnnotationState, err)
	}
	// What this process heard from the server outranks a state it failed
	// to record: a PENDING transaction is polled, never sent again.
	if rec, ok := e.sendRecordOf(e.tx); ok && rec.outcome == answeredPending && !e.st.Pending {
		e.st.Pending = true
		if e.st.Server == "" {
			e.st.Server = rec.server
		}
	}

	if wait := e.st.NextAttempt.Sub(e.now()); wait > 0 {
		what := "the next attempt"
		if e.st.Pending {
			what = "the next CertPoll"
		}
		msg := fmt.Sprintf("waiting %s for %s", wait.Round(time.Second), what)
		if e.st.LastError != "" && !e.st.Pending {
			msg += fmt.Sprintf(" (attempt %d/%d failed: %s)", e.st.FailedAttempts, e.cfg.maxAttempts, e.st.LastError)
		}
		if strings.HasPrefix(e.st.LastError, cacheFullPrefix) {
			return signer.PEMBundle{}, cacheFullCondition(e.pendingf(wait, "%s", msg))
		}
		return signer.PEMBundle{}, e.pendingf(wait, "%s", msg)
	}

	// The profile's circuit breaker: while its server does not answer, its
	// requests go back to the queue (no attempt spent, no worker held) but
	// for one probe at a time. Policy and this request's own backoff come
	// first, so neither a refusal nor a wait takes the probe.
	release, retryAfter, err := e.Registry.Admit(e.key)
	if err != nil {
		return signer.PEMBundle{}, signer.PendingError{Err: err, RequeueAfter: retryAfter}
	}
	defer release()

	// Bound what this profile has in flight at the server; the rest wait
	// (PendingError spends no attempt) and come back after a short pause.
	limit := e.p.GetSpec().MaxConcurrentRequests
	if limit <= 0 {
		limit = defaultMaxConcurrentRequests
	}
	if e.ProfileShare > 0 && limit > e.ProfileShare {
		limit = e.ProfileShare
	}
	if !e.acquireWithin(e.ctx, e.key, limit, slotWait) {
		return signer.PEMBundle{}, e.pendingf(time.Duration(200+rand.IntN(300))*time.Millisecond, "waiting for one of the profile's %d request slots (maxConcurrentRequests)", limit)
	}
	defer e.release(e.key)

	servers, err := e.servers()
	if err != nil {
		return signer.PEMBundle{}, err
	}
	var (
		sg     *scep.Signer
		csrDER []byte
		rep    *scep.CertRep
	)
	for i, server := range servers {
		last := i == len(servers)-1
		e.server = server
		c, info, err := e.Registry.ServerInfoFor(e.ctx, e.p, server)
		if err != nil {
			if !last && mayFailOver(err) {
				e.movedOn(err)
				continue
			}
			return signer.PEMBundle{}, e.failedAttempt("asking the SCEP server for its capabilities and certificates", err)
		}
		e.algorithms = info.Algorithms
		if !e.st.Pending && e.mayHaveBeenSent() {
			pollSg, err := e.pollSigner(csr)
			if err != nil {
				return signer.PEMBundle{}, err
			}
			rep, err := e.resume(c, info, pollSg, csr)
			switch {
			case err == nil:
				return e.outcome(rep, nil)
			case serverDoesNotKnow(err):
				// Sent below, with the same transactionID.
				e.log.Info("the SCEP server does not know the transaction; sending the PKCSReq", "request", e.req.id(), "transaction", string(e.tx), "answer", err.Error())
			case !last && e.st.Server == "" && mayFailOver(err):
				// No server was sealed, so no PKCSReq left for any (one is
				// sealed before it leaves when the profile lists several).
				e.movedOn(err)
				continue
			default:
				return signer.PEMBundle{}, e.noUsableAnswer(fmt.Sprintf("asking about transaction %s, whose PKCSReq the server may have (not sent again until it answers)", e.tx), err)
			}
		}
		if sg == nil {
			renewal, err := e.chooseRenewal(info)
			if err != nil {
				return signer.PEMBundle{}, err
			}
			// Once per call: a Dynamic challenge spends a one-time password.
			if sg, csrDER, err = e.prepare(csr); err != nil {
				return signer.PEMBundle{}, err
			}
			if renewal != nil {
				sg = renewal
			}
		}
		if e.st.Pending {
			rep, err = c.CertPoll(e.ctx, info, sg, e.tx, csr.RawSubject)
			return e.outcome(rep, err)
		}
		newMessage, kind := scep.NewPKCSReq, "PKCSReq"
		if e.renewing {
			newMessage, kind = scep.NewRenewalReq, "RenewalReq"
		}
		msg, merr := newMessage(csrDER, info.MessageOptions(sg, e.tx))
		if merr != nil {
			return signer.PEMBundle{}, e.fail(metrics.ResultFailed, fmt.Errorf("building the %s: %w", kind, merr))
		}
		if err := e.pinBeforeSend(); err != nil {
			return signer.PEMBundle{}, err
		}
		// What was sent goes into the outcome's Event (issued, pending,
		// rejected, retrying) rather than an Event of its own: one Event
		// write per enrollment fewer for the API server.
		e.sent = fmt.Sprintf("%s sent to %s (transaction %s, %s)", kind, server, e.tx, info.Algorithms)
		if e.notRenewal != "" {
			e.sent += fmt.Sprintf(", not a RenewalReq: %s", e.notRenewal)
		}
		e.recordSend(e.obj().GetUID(), e.tx, false)
		rep, err = c.Send(e.ctx, info, msg)
		e.recordSend(e.obj().GetUID(), e.tx, answered(err))
		if err != nil && neverReceived(err) {
			// Not this server's transaction: the next server, or the next
			// attempt, may take it.
			pinned := e.st.Server != ""
			e.st.Server = ""
			if !last {
				e.sent = ""
				e.movedOn(err)
				if pinned {
					// Unpin now: should the next server fail before its
					// own PKCSReq, the transaction is free again.
					if err := e.persist(); err != nil {
						return signer.PEMBundle{}, err
					}
				}
				continue
			}
		}
		return e.outcome(rep, err)
	}
	return signer.PEMBundle{}, errors.New("the profile names no SCEP server") // Servers always holds url
}

// sentPrefix starts an outcome's Event with what this call sent, if anything.
func (e *enrollment) sentPrefix() string {
	if e.sent == "" {
		return ""
	}
	return e.sent + ": "
}

// failedAttempt counts a failed attempt and schedules the next one, or
// fails the request once maxAttempts is reached. Permanent errors (a query
// too long for GET, a CA pin mismatch found while enrolling) are handled too.
func (e *enrollment) failedAttempt(what string, err error) error {
	var mismatch *scep.FingerprintMismatchError
	var secret *profiles.SecretError
	var spec *profiles.SpecError
	var belowFloor *scepclient.BelowFloorError
	switch {
	case errors.As(err, &mismatch), errors.As(err, &secret), errors.As(err, &spec), errors.As(err, &belowFloor):
		// The profile is wrong, not the request: wait for the profile to be
		// fixed (its controller reports it), spending no attempt.
		e.Registry.Forget(e.key)
		return e.pendingf(e.cfg.retryInterval, "%s: %v", what, err)
	case errors.Is(err, context.Canceled):
		return err
	case !scepclient.IsTransient(err):
		return e.fail(metrics.ResultFailed, fmt.Errorf("%s with %s: %w", what, e.serverURL(), err))
	}
	e.st.FailedAttempts++
	e.st.LastError = shorten(err.Error(), 300)
	if e.st.FailedAttempts >= e.cfg.maxAttempts {
		return e.fail(metrics.ResultFailed, fmt.Errorf("%s with %s failed %d times (maxAttempts); last error: %w", what, e.serverURL(), e.st.FailedAttempts, err))
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
	e.Recorder.Eventf(e.obj(), e.p, corev1.EventTypeWarning, EventRetrying, "Sign", "%sattempt %d/%d failed, next in %s: %s", e.sentPrefix(), e.st.FailedAttempts, e.cfg.maxAttempts, wait.Round(time.Second), e.st.LastError)
	return e.pendingf(wait, "attempt %d/%d failed, retrying in %s: %v", e.st.FailedAttempts, e.cfg.maxAttempts, wait.Round(time.Second), err)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a character boundary: half a UTF-8 sequence would reach the
	// request's annotation (JSON replaces it) and the Event as U+FFFD.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// persist seals the state onto the request, refusing to overwrite a
// concurrent change (optimistic lock on resourceVersion).
func (e *enrollment) persist() error {
	obj := e.obj()
	orig, _ := obj.DeepCopyObject().(client.Object) // a DeepCopy of its own type
	e.st.TransactionID = string(e.tx)
	e.write(obj, e.st)
	e.touch(e.obj().GetUID())
	if err := e.Client.Patch(e.ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("recording the SCEP transaction state on the %s: %w", e.req.kind(), err)
	}
	return nil
}
