package signer

import (
	"crypto/x509"
	"errors"
	"net/http"

	corev1 "k8s.io/api/core/v1"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// mayHaveBeenSent says whether a PKCSReq for this transaction may have
// reached the server without its answer reaching us: this process sent it
// and lost the connection, or the request predates this process's lead (a
// restart, a leader change), so the process before may have sent it.
// Nothing a tenant writes decides it: the transactionID is derived, the
// send record is in memory, the creation time is the API server's.
func (e *enrollment) mayHaveBeenSent() bool {
	switch e.sendOutcome(e.tx) {
	case sentUnanswered, answeredIssued:
		return true
	case sentAnswered, answeredPending:
		return false
	}
	return !e.createdWhileLeading(e.obj())
}

// resume asks the server, with a CertPoll, about a transaction whose
// PKCSReq may have reached it without the answer reaching us. A server that
// remembers the transaction (NDES, EJBCA) answers with the certificate or
// PENDING, and enrolling again would issue twice. sg signs the poll (see
// pollSigner). An error that serverDoesNotKnow tells the
// caller to send the PKCSReq, with the same transactionID; any other error
// leaves open whether the server has the transaction, and the caller must
// not send it.
func (e *enrollment) resume(c *scepclient.Client, info *scepclient.ServerInfo, sg *scep.Signer, csr *x509.CertificateRequest) (*scep.CertRep, error) {
	rep, err := c.CertPoll(e.ctx, info, sg, e.tx, csr.RawSubject)
	if err != nil {
		return nil, err
	}
	e.Recorder.Eventf(e.obj(), e.p, corev1.EventTypeNormal, EventResumed, "Sign", "the SCEP server knew transaction %s (%s): resumed without enrolling again", e.tx, rep.Status)
	return rep, nil
}

// serverDoesNotKnow says whether a CertPoll's error is the server's own
// word that it holds no such transaction: a SCEP FAILURE (badCertID), an
// HTTP 4xx refusal of the message, or HTTP 500/501 from a server that
// cannot poll at all (MicroMDM and step-ca answer every CertPoll 500).
// Anything else (no answer, a timeout, a gateway's 502/503/504, an answer
// that is not SCEP) may hide a server that has the PKCSReq, and sending it
// again could issue twice: the chaos soak caught exactly that, a PKCSReq's
// answer cut, then the CertPoll's, then a second PKCSReq issued again.
// The one case left: a polling server that answers a CertPoll HTTP 500
// while it holds the transaction.
func serverDoesNotKnow(err error) bool {
	var (
		failure *scep.FailureError
		httpErr *scepclient.HTTPError
	)
	switch {
	case errors.As(err, &failure):
		return true
	case errors.As(err, &httpErr):
		return httpErr.StatusCode == http.StatusInternalServerError || httpErr.StatusCode == http.StatusNotImplemented || !httpErr.Temporary()
	}
	return false
}

// pollSigner is who signs a CertPoll of the transaction: the PKCSReq's
// signer. The poll carries no CSR, so no challenge is spent on it.
func (e *enrollment) pollSigner(csr *x509.CertificateRequest) (*scep.Signer, error) {
	e.polling = true
	defer func() { e.polling = false }()
	sg, _, err := e.prepare(csr)
	return sg, err
}
