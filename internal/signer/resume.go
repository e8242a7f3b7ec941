package signer

import (
	"crypto/x509"

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
// PENDING, and enrolling again would issue twice. ok is false when the
// server does not know the transaction or cannot poll (MicroMDM and step-ca
// answer HTTP 500 "not implemented"): the caller sends the PKCSReq, with
// the same transactionID. The poll carries no CSR, so it spends no
// challenge.
func (e *enrollment) resume(c *scepclient.Client, info *scepclient.ServerInfo, csr *x509.CertificateRequest) (*scep.CertRep, bool) {
	e.polling = true
	sg, _, err := e.prepare(csr)
	e.polling = false
	if err != nil {
		return nil, false // prepare fails the same way again below, and says why
	}
	rep, err := c.CertPoll(e.ctx, info, sg, e.tx, csr.RawSubject)
	if err != nil {
		e.log.Info("the SCEP server could not tell about the transaction; sending the PKCSReq", "request", e.req.id(), "transaction", string(e.tx), "answer", err.Error())
		return nil, false
	}
	e.Recorder.Eventf(e.obj(), e.p, corev1.EventTypeNormal, EventResumed, "Sign", "the SCEP server knew transaction %s (%s): resumed without enrolling again", e.tx, rep.Status)
	return rep, true
}
