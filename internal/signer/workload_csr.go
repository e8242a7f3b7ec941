package signer

import (
	"crypto"
	"crypto/x509"
	"fmt"

	experimentalapi "github.com/cert-manager/cert-manager/pkg/apis/experimental/v1alpha1"
	authzv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/pemkey"
)

// ReasonPrivateKeyRefused: csrMode Rebuild for a CertificateSigningRequest,
// whose private key Secret is missing from the annotation, not the
// requester's to read, or not the CSR's key.
const ReasonPrivateKeyRefused = "PrivateKeyRefused"

// csrWorkloadKey reads a CertificateSigningRequest's private key for csrMode
// Rebuild, by cert-manager's convention: the annotation
// experimental.cert-manager.io/private-key-secret-name names a Secret (key
// tls.key) in the profile's resource namespace: the cluster resource
// namespace for a ClusterSCEPProfile, the profile's own for a SCEPProfile,
// as cert-manager's own signers read it for a ClusterIssuer or an Issuer.
//
// Anybody allowed to create CSRs writes that annotation, and the operator
// may read every Secret of that namespace (its own among them), so the
// Secret is read only when the requester (spec.username, groups, uid and
// extra, which the API server sets) may itself get it, as a
// SubjectAccessReview tells: the operator never reads a Secret on behalf of
// someone who could not read it. The key must then be the CSR's.
func (e *enrollment) csrWorkloadKey(csr *x509.CertificateRequest) (crypto.Signer, error) {
	kr, ok := e.req.(kubeCSR)
	if !ok {
		return nil, e.fail(metrics.ResultFailed, fmt.Errorf("csrMode Rebuild cannot read a private key for a %s", e.req.kind()))
	}
	namespace := e.p.GetNamespace()
	if namespace == "" {
		namespace = e.Registry.ClusterResourceNamespace
	}
	name := kr.Annotations[experimentalapi.CertificateSigningRequestPrivateKeyAnnotationKey]
	if name == "" {
		return nil, e.refuse(ReasonPrivateKeyRefused, fmt.Errorf("csrMode Rebuild needs the private key: annotate the CertificateSigningRequest with %s naming a Secret (tls.key) in namespace %s", experimentalapi.CertificateSigningRequestPrivateKeyAnnotationKey, namespace))
	}
	allowed, err := e.requesterMayGetSecret(kr.CertificateSigningRequest, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("asking whether the requester may read Secret %s/%s: %w", namespace, name, err)
	}
	if !allowed {
		return nil, e.refuse(ReasonPrivateKeyRefused, fmt.Errorf("the requester %q may not get Secret %s/%s, which the annotation %s names; it was not read", shorten(kr.Spec.Username, 128), namespace, shorten(name, 253), experimentalapi.CertificateSigningRequestPrivateKeyAnnotationKey))
	}
	var sec corev1.Secret
	if err := e.APIReader.Get(e.ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, e.pendingf(e.cfg.retryInterval, "the private key Secret %s/%s does not exist yet", namespace, name)
		}
		if apierrors.IsForbidden(err) {
			return nil, e.pendingf(e.cfg.retryInterval, "the operator may not read Secret %s/%s: grant it Rebuild access to namespace %s (Helm value rebuild.namespaces)", namespace, name, namespace)
		}
		return nil, fmt.Errorf("reading the private key Secret: %w", err)
	}
	key, err := pemkey.Parse(sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, e.refuse(ReasonPrivateKeyRefused, fmt.Errorf("the private key Secret %s/%s: tls.key %w", namespace, name, err))
	}
	if !publicKeysEqual(key.Public(), csr.PublicKey) {
		return nil, e.refuse(ReasonPrivateKeyRefused, fmt.Errorf("the private key in Secret %s/%s does not match the request's CSR", namespace, name))
	}
	return key, nil
}

// requesterMayGetSecret asks the API server whether the CSR's requester may
// get the Secret namespace/name.
func (e *enrollment) requesterMayGetSecret(csr *certificatesv1.CertificateSigningRequest, namespace, name string) (bool, error) {
	return subjectMay(e.ctx, e.Client, csr, authzv1.ResourceAttributes{
		Namespace: namespace, Verb: "get", Resource: "secrets", Name: name,
	})
}
