package signer

import (
	"fmt"
	"strings"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/ndes"
)

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
		if e.renewing {
			// NDES authenticates a RenewalReq by the certificate that signs
			// it: no one-time password is spent on it.
			return "", nil
		}
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
	e.Recorder.Eventf(e.obj(), e.p, corev1.EventTypeWarning, ReasonPasswordCacheFull, "Sign", "NDES's password cache is full (attempt %d/%d); trying again in %s", e.st.FailedAttempts, e.cfg.maxAttempts, e.cfg.retryInterval)
	return cacheFullCondition(e.pendingf(e.cfg.retryInterval, "NDES's password cache is full: waiting %s (attempt %d/%d); unused passwords expire after 60 minutes, or raise PasswordMax on NDES", e.cfg.retryInterval, e.st.FailedAttempts, e.cfg.maxAttempts))
}

// cacheFullPrefix marks LastError when the last attempt met a full cache, so
// the waits that follow keep the condition: issuer-lib applies the request's
// status server-side, and a condition not sent again is removed.
const cacheFullPrefix = ReasonPasswordCacheFull + ": "

func cacheFullCondition(err error) error {
	return signer.SetCertificateRequestConditionError{Err: err, ConditionType: ConditionChallenge, Status: cmmeta.ConditionFalse, Reason: ReasonPasswordCacheFull}
}
