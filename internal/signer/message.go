package signer

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/ndes"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// prepare returns who signs the pkiMessage and the CSR to send (none for
// a CertPoll: no CSR is rebuilt and no challenge, perhaps a one-time
// password, is spent on it). The caller has run admit on csr: what is
// rebuilt here carries exactly the subject and extensions checked there.
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
		// certificate derived from the transaction, so a CertPoll after a
		// restart presents the same one without it being stored.
		sg, err = scep.NewDeterministicSigner(rk, csr.RawSubject, scep.SignerCertificateOptions{TransactionID: e.tx, NotBefore: e.obj().GetCreationTimestamp().Time})
		if err != nil {
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
	if name := spec.CertificateTemplate; name != "" {
		// Policy refused any template extension of the tenant's CSR; the
		// profile's is the only one sent.
		ext, err := ndes.TemplateExtension(name)
		if err != nil {
			return nil, nil, e.fail(metrics.ResultFailed, fmt.Errorf("spec.certificateTemplate: %w", err))
		}
		tmpl.Extensions = append(slices.Clone(tmpl.Extensions), ext)
	}
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
	return e.st.Pending || e.polling
}

// profileSigner loads the profile's RSA signer (Passthrough, and ECDSA
// workload keys in Rebuild).
func (e *enrollment) profileSigner() (*scep.Signer, error) {
	sg, err := e.Registry.LoadSigner(e.ctx, e.p)
	if err != nil {
		return nil, e.pendingf(e.cfg.retryInterval, "%v", err)
	}
	return sg, nil
}
