package signer

import (
	"errors"
	"fmt"
	"time"

	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"

	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// outcome turns the server's answer into issuer-lib's result.
func (e *enrollment) outcome(rep *scep.CertRep, err error) (signer.PEMBundle, error) {
	var failure *scep.FailureError
	switch {
	case errors.As(err, &failure):
		e.Recorder.Eventf(e.obj(), e.p, corev1.EventTypeWarning, EventRejected, "Sign", "%s%v (transaction %s)", e.sentPrefix(), failure, e.tx)
		return signer.PEMBundle{}, e.fail(metrics.ResultRejected, fmt.Errorf("%s: %w", e.serverURL(), err))
	case err != nil:
		return signer.PEMBundle{}, e.noUsableAnswer("enrolling", err)
	case rep.Status == scep.StatusPending:
		e.recordOutcome(e.obj().GetUID(), e.tx, e.server, answeredPending)
		return signer.PEMBundle{}, e.pending()
	}
	bundle, err := bundleOf(rep.Certificates)
	if err != nil {
		return signer.PEMBundle{}, e.fail(metrics.ResultFailed, err)
	}
	e.recordOutcome(e.obj().GetUID(), e.tx, e.server, answeredIssued)
	metrics.Enrollments.WithLabelValues(e.key.String(), metrics.ResultIssued).Inc()
	metrics.EnrollmentsByAlgorithm.WithLabelValues(e.key.String(), e.algorithms.Cipher.String(), e.algorithms.Digest.String()).Inc()
	metrics.EnrollmentDuration.WithLabelValues(e.key.String()).Observe(e.now().Sub(e.obj().GetCreationTimestamp().Time).Seconds())
	e.Recorder.Eventf(e.obj(), e.p, corev1.EventTypeNormal, EventIssued, "Sign", "%sissued by %q, serial %s (transaction %s)", e.sentPrefix(), rep.IssuedBy(), rep.Certificates[0].SerialNumber.Text(16), e.tx)
	e.log.Info("certificate issued", "request", e.req.id(), "transaction", string(e.tx), "serial", rep.Certificates[0].SerialNumber.Text(16))
	return bundle, nil
}

// pending records a PENDING answer and schedules the next CertPoll, or
// fails the request once it has been pending for pendingTimeout.
func (e *enrollment) pending() error {
	now := e.now()
	first := !e.st.Pending
	if e.st.PendingSince.IsZero() {
		e.st.PendingSince = now
	}
	if now.Sub(e.st.PendingSince) > e.cfg.pendingTimeout {
		return e.fail(metrics.ResultFailed, fmt.Errorf("the SCEP server has answered PENDING since %s, longer than pendingTimeout %s (transaction %s): approve or reject it on the CA", e.st.PendingSince.UTC().Format(time.RFC3339), e.cfg.pendingTimeout, e.tx))
	}
	e.st.Pending, e.st.NextAttempt, e.st.LastError = true, now.Add(e.cfg.retryInterval), ""
	if err := e.persist(); err != nil {
		return err
	}
	if first {
		e.Recorder.Eventf(e.obj(), e.p, corev1.EventTypeNormal, EventPending, "Sign", "%sthe SCEP server answered PENDING (transaction %s); polling every %s for up to %s", e.sentPrefix(), e.tx, e.cfg.retryInterval, e.cfg.pendingTimeout)
	}
	return e.pendingf(e.cfg.retryInterval, "the SCEP server answered PENDING (transaction %s, waiting for approval on the CA since %s)", e.tx, e.st.PendingSince.UTC().Format(time.RFC3339))
}

// noUsableAnswer is a failed attempt at an exchange whose answer did not
// come or could not be used. A reply whose signature does not verify may
// mean the CA rolled over: GetCACert is asked again next time, and the
// profile's status shows what the server serves.
func (e *enrollment) noUsableAnswer(what string, err error) error {
	var reply *scep.ReplyError
	if errors.As(err, &reply) && reply.Reason == "BadSignature" {
		e.Registry.Forget(e.key)
		e.Registry.Recheck(e.p)
	}
	return e.failedAttempt(what, err)
}
