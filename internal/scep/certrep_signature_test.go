package scep

import (
	"crypto/x509"
	"errors"
	"testing"
)

// TestReplySignedByAnIssuedCertificateRefused: a CertRep counts only when
// the CA or an RA from GetCACert signed it. A certificate the same CA issued
// to a workload (which a tenant holds, with its key) must not be able to
// answer for the server, even when the reply carries that certificate.
func TestReplySignedByAnIssuedCertificateRefused(t *testing.T) {
	caKey := testKey(t, 0)
	ca := testCert(t, caKey, "CA", true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, nil, nil)
	workloadKey := testKey(t, 2)
	workload := testCert(t, workloadKey, "tenant workload", false, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, ca, caKey)

	msg := pkcsReqTo(t, ca, "victim.example")

	for _, status := range []PKIStatus{StatusPending, StatusFailure} {
		forged := hostileReply(t, msg, &Signer{Certificate: workload, Key: workloadKey}, string(msg.TransactionID), string(status), "2", "")
		_, err := msg.ReadReply(forged, []*x509.Certificate{ca})
		var re *ReplyError
		if !errors.As(err, &re) || re.Reason != "BadSignature" {
			t.Errorf("%s signed by a workload certificate the CA issued: ReadReply = %v, want a BadSignature ReplyError", status, err)
		}
	}

	// The same reply signed by the CA is the server's.
	genuine := hostileReply(t, msg, &Signer{Certificate: ca, Key: caKey}, string(msg.TransactionID), string(StatusPending), "", "")
	if rep, err := msg.ReadReply(genuine, []*x509.Certificate{ca}); err != nil || rep.Status != StatusPending {
		t.Fatalf("PENDING signed by the CA: %v", err)
	}
}
