package signer

import (
	"fmt"

	authzv1 "k8s.io/api/authorization/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// ReasonReferenceDenied: the requester of a CertificateSigningRequest may
// not reference the SCEPProfile its signerName names.
const ReasonReferenceDenied = "DeniedReference"

// checkReference decides whether a CertificateSigningRequest may use a
// SCEPProfile, a tenant's namespaced profile. A CSR is cluster-scoped and
// anybody allowed to create one can write any signerName, so, as
// cert-manager does for namespaced Issuers, its requester (spec.username,
// groups, uid, extra, which the API server sets) must be allowed the verb
// "reference" on "signers" of group scep.certificates.dev in the profile's
// namespace, for the profile's name or "*": a permission the namespace's
// admin grants with a Role. ClusterSCEPProfiles need no such check: the
// approval, which needs "approve" on the signerName, is the gate, as for
// every cluster-scoped signer.
func (e *enrollment) checkReference() error {
	kr, isCSR := e.req.(kubeCSR)
	p, namespaced := e.p.(*scepv1alpha1.SCEPProfile)
	if !isCSR || !namespaced {
		return nil
	}
	for _, name := range []string{p.Name, "*"} {
		ok, err := subjectMay(e.ctx, e.Client, kr.CertificateSigningRequest, authzv1.ResourceAttributes{
			Group: scepv1alpha1.GroupVersion.Group, Resource: "signers", Verb: "reference", Namespace: p.Namespace, Name: name,
		})
		if err != nil {
			return fmt.Errorf("asking whether the requester may reference SCEPProfile %s/%s: %w", p.Namespace, p.Name, err)
		}
		if ok {
			return nil
		}
	}
	return e.refuse(ReasonReferenceDenied, fmt.Errorf("the requester %q may not reference SCEPProfile %s/%s: a CertificateSigningRequest may name a namespaced profile only when its requester is allowed the verb \"reference\" on signers (group %s) named %q or \"*\" in namespace %s",
		shorten(kr.Spec.Username, 128), p.Namespace, p.Name, scepv1alpha1.GroupVersion.Group, p.Name, p.Namespace))
}
