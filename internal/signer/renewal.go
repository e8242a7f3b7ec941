package signer

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/internal/pemkey"
	"github.com/scep-operator/scep-operator/internal/policy"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// chooseRenewal sets e.renewing and e.notRenewal for this call and returns
// the RenewalReq signer, nil for a PKCSReq. A PENDING RenewalReq is polled
// with the signer it was sent with: one that can no longer be had counts as
// a failed attempt.
func (e *enrollment) chooseRenewal(info *scepclient.ServerInfo) (*scep.Signer, error) {
	if e.st.Pending && !e.st.Renewal {
		return nil, nil
	}
	sg, why := e.renewalSigner(info)
	if e.st.Pending && sg == nil {
		return nil, e.failedAttempt("polling the RenewalReq", fmt.Errorf("its signer, the current certificate, cannot be used any more: %s", why))
	}
	e.renewing, e.notRenewal = sg != nil, why
	e.st.Renewal = e.renewing
	return sg, nil
}

// renewalSigner decides whether this request's message is a RenewalReq
// (spec.renewWithRenewalReq) and returns the signer for it: the
// Certificate's current certificate and key. When it is not, why is the
// reason, for the outcome's Event ("" when the profile does not ask for
// RenewalReq). Nothing here fails the request: a renewal that cannot be a
// RenewalReq is a fresh enrollment.
//
// The Secret read is the one csrMode Rebuild's rules allow: in the
// request's own namespace (where the operator holds "get" on Secrets only
// when the chart grants Rebuild there), named by the Certificate that
// controls the request (same UID), and written by cert-manager for it
// (annotation cert-manager.io/certificate-name). What it holds is the
// tenant's own, so it is checked before use: a certificate of the profile's
// CA, valid now, with the RSA key in tls.key. The CSR sent is still the
// request's, which the profile's policy admitted; the RenewalReq only
// changes who signs the pkiMessage.
func (e *enrollment) renewalSigner(info *scepclient.ServerInfo) (sg *scep.Signer, why string) {
	if !e.p.GetSpec().RenewWithRenewalReq {
		return nil, ""
	}
	if !info.Caps.Renewal() {
		return nil, "the server does not list Renewal in GetCACaps"
	}
	cr, ok := e.req.(certificateRequest)
	if !ok {
		return nil, "a " + e.req.kind() + " has no Certificate, whose current certificate a RenewalReq is signed with"
	}
	certName, certUID, ok := policy.CertificateOwner(cr.CertificateRequest)
	if !ok {
		return nil, "the request was not made by a Certificate, whose current certificate a RenewalReq is signed with"
	}
	var cert cmapi.Certificate
	if err := e.APIReader.Get(e.ctx, client.ObjectKey{Namespace: cr.Namespace, Name: certName}, &cert); err != nil {
		return nil, fmt.Sprintf("reading Certificate %s/%s: %v", cr.Namespace, certName, err)
	}
	if cert.UID != certUID {
		return nil, fmt.Sprintf("the request's ownerReference names Certificate %s/%s with another UID: the request was not made by it", cr.Namespace, certName)
	}
	name := cert.Spec.SecretName
	var sec corev1.Secret
	if err := e.APIReader.Get(e.ctx, client.ObjectKey{Namespace: cr.Namespace, Name: name}, &sec); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return nil, fmt.Sprintf("Certificate %s/%s has no Secret %s yet (a first issuance)", cr.Namespace, certName, name)
		case apierrors.IsForbidden(err):
			return nil, fmt.Sprintf("the operator may not read Secret %s/%s: grant it Rebuild access to namespace %s (Helm value rebuild.namespaces)", cr.Namespace, name, cr.Namespace)
		}
		return nil, fmt.Sprintf("reading Secret %s/%s: %v", cr.Namespace, name, err)
	}
	if sec.Annotations[cmapi.CertificateNameKey] != certName {
		return nil, fmt.Sprintf("Secret %s/%s is not Certificate %s's as cert-manager writes it (annotation %s)", cr.Namespace, name, certName, cmapi.CertificateNameKey)
	}
	current, key, why := currentCertificate(sec.Data)
	if why != "" {
		return nil, fmt.Sprintf("Secret %s/%s: %s", cr.Namespace, name, why)
	}
	now := e.now()
	if now.Before(current.NotBefore) || now.After(current.NotAfter) {
		return nil, fmt.Sprintf("the current certificate in Secret %s/%s is not valid now (expired on %s)", cr.Namespace, name, current.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
	}
	if !issuedByOneOf(current, info.CACerts) {
		return nil, fmt.Sprintf("the current certificate in Secret %s/%s was not issued by the CA of the profile's server", cr.Namespace, name)
	}
	return &scep.Signer{Certificate: current, Key: key}, ""
}

// currentCertificate reads tls.crt's first certificate and tls.key, which
// must be its RSA key (SCEP envelopes the reply to the signer).
func currentCertificate(data map[string][]byte) (*x509.Certificate, *rsa.PrivateKey, string) {
	block, _ := pem.Decode(data[corev1.TLSCertKey])
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, "tls.crt holds no PEM certificate"
	}
	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, "tls.crt is not a certificate"
	}
	k, err := pemkey.Parse(data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, nil, "tls.key " + err.Error()
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, "the current key is not RSA; SCEP envelopes the reply to the signer, so a RenewalReq needs an RSA key"
	}
	if !publicKeysEqual(rk.Public(), crt.PublicKey) {
		return nil, nil, "tls.key is not the key of tls.crt"
	}
	return crt, rk, ""
}

// issuedByOneOf says whether a CA certificate of certs signed crt.
func issuedByOneOf(crt *x509.Certificate, certs *scep.CACerts) bool {
	for _, cc := range certs.Certs {
		if cc.Role == scep.RoleCA && crt.CheckSignatureFrom(cc.Certificate) == nil {
			return true
		}
	}
	return false
}
