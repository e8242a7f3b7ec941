package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"fmt"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/pemkey"
	"github.com/scep-operator/scep-operator/internal/policy"
)

// workloadKey reads the Certificate's pending private key (Rebuild mode) and
// checks that it is the CSR's. Every pointer on the way is one a tenant can
// set (ownerReferences, the Certificate's status, a Secret's name), so each
// is checked against the next: the request is controller-owned by the
// Certificate it names (same UID), the Secret is that Certificate's pending
// key as cert-manager makes it (its label and a controller ownerReference
// to the same UID), and the key is the CSR's.
func (e *enrollment) workloadKey(csr *x509.CertificateRequest) (crypto.Signer, error) {
	cr, ok := e.req.(certificateRequest)
	if !ok {
		return e.csrWorkloadKey(csr)
	}
	certName, certUID, ok := policy.CertificateOwner(cr.CertificateRequest)
	if !ok {
		return nil, e.refuse(ReasonNotACertificateRequest, fmt.Errorf("csrMode Rebuild needs a request made by a Certificate (a controller ownerReference to a cert-manager.io Certificate), whose pending private key it reads"))
	}
	var cert cmapi.Certificate
	if err := e.APIReader.Get(e.ctx, client.ObjectKey{Namespace: cr.Namespace, Name: certName}, &cert); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, e.fail(metrics.ResultFailed, fmt.Errorf("the request's Certificate %s/%s does not exist", cr.Namespace, certName))
		}
		return nil, fmt.Errorf("reading Certificate %s/%s: %w", cr.Namespace, certName, err)
	}
	if cert.UID != certUID {
		return nil, e.refuse(ReasonNotACertificateRequest, fmt.Errorf("the request's ownerReference names Certificate %s/%s with UID %s, but that Certificate has UID %s: the request was not made by it", cr.Namespace, certName, certUID, cert.UID))
	}
	name := ""
	if cert.Status.NextPrivateKeySecretName != nil {
		name = *cert.Status.NextPrivateKeySecretName
	}
	if name == "" {
		return nil, e.pendingf(e.cfg.retryInterval, "Certificate %s/%s has no status.nextPrivateKeySecretName yet", cr.Namespace, certName)
	}
	var sec corev1.Secret
	if err := e.APIReader.Get(e.ctx, client.ObjectKey{Namespace: cr.Namespace, Name: name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, e.pendingf(e.cfg.retryInterval, "the pending private key Secret %s/%s does not exist yet", cr.Namespace, name)
		}
		if apierrors.IsForbidden(err) {
			return nil, e.pendingf(e.cfg.retryInterval, "the operator may not read Secret %s/%s: grant it Rebuild access to namespace %s (Helm value rebuild.namespaces)", cr.Namespace, name, cr.Namespace)
		}
		return nil, fmt.Errorf("reading the pending private key Secret: %w", err)
	}
	if sec.Labels[cmapi.IsNextPrivateKeySecretLabelKey] != "true" || !controlledBy(&sec, cert.UID) {
		return nil, e.refuse(ReasonNotACertificateRequest, fmt.Errorf("the Secret %s/%s is not Certificate %s's pending private key as cert-manager makes it (label %s=true and a controller ownerReference to the Certificate); it was not read further", cr.Namespace, name, certName, cmapi.IsNextPrivateKeySecretLabelKey))
	}
	key, err := pemkey.Parse(sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, e.fail(metrics.ResultFailed, fmt.Errorf("the pending private key Secret %s/%s: tls.key %w", cr.Namespace, name, err))
	}
	if !publicKeysEqual(key.Public(), csr.PublicKey) {
		return nil, e.refuse(ReasonPolicyViolation, fmt.Errorf("the pending private key in Secret %s/%s does not match the request's CSR", cr.Namespace, name))
	}
	return key, nil
}

// controlledBy says whether obj's controller ownerReference has uid.
func controlledBy(obj metav1.Object, uid types.UID) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	return ref != nil && ref.UID == uid
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
