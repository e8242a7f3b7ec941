package signer

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/policy"
)

// ConditionPolicy is the CertificateRequest condition set when a request is
// refused before anything was sent, with one of the reasons below.
const ConditionPolicy = "SCEPPolicy"

// Reasons of ConditionPolicy.
const (
	// ReasonPolicyViolation: the CSR asks for what the profile does not allow.
	ReasonPolicyViolation = "PolicyViolation"
	// ReasonNamespaceNotAllowed: the ClusterSCEPProfile's namespaceSelector
	// does not select the request's namespace.
	ReasonNamespaceNotAllowed = "NamespaceNotAllowed"
	// ReasonInvalidRequest: spec.request is not a CSR signed by its own key.
	ReasonInvalidRequest = "InvalidRequest"
	// ReasonNotACertificateRequest: Rebuild needs a request made by a
	// Certificate, with that Certificate's pending key.
	ReasonNotACertificateRequest = "NotFromCertificate"
)

// refuse fails the request before anything is sent: a Warning Event, the
// SCEPPolicy condition with reason, and a permanent failure.
func (e *enrollment) refuse(reason string, err error) error {
	e.Recorder.Eventf(e.obj(), e.p, corev1.EventTypeWarning, EventPolicyViolation, "Sign", "%v; nothing was sent to the SCEP server", err)
	return signer.SetCertificateRequestConditionError{
		Err:           e.fail(metrics.ResultPolicy, err),
		ConditionType: ConditionPolicy,
		Status:        cmmeta.ConditionFalse,
		Reason:        reason,
	}
}

// parseCSR reads spec.request: a PEM PKCS#10 request signed by its own key.
func (e *enrollment) parseCSR() (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(e.req.csrPEM())
	if block == nil {
		return nil, e.refuse(ReasonInvalidRequest, errors.New("spec.request holds no PEM certificate request"))
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, e.refuse(ReasonInvalidRequest, fmt.Errorf("spec.request holds a PEM %q block, not a CERTIFICATE REQUEST", shorten(block.Type, 64)))
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, e.refuse(ReasonInvalidRequest, fmt.Errorf("spec.request is not a PKCS#10 certificate request: %w", err))
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, e.refuse(ReasonInvalidRequest, fmt.Errorf("spec.request is not signed by its own key: %w", err))
	}
	return csr, nil
}

// admit checks, on every call and before any message is built, that the
// request's namespace (or a CSR's requester) may use the profile and that
// the CSR fits the profile.
// Nothing on the request (annotations, earlier state) can skip it.
func (e *enrollment) admit(csr *x509.CertificateRequest) error {
	if err := e.checkNamespace(); err != nil {
		return err
	}
	if err := e.checkReference(); err != nil {
		return err
	}
	if err := policy.Check(e.p.GetSpec(), policy.Request{CSR: csr, IsCA: e.req.isCA(), Vars: e.req.variables(e.ClusterDomain)}); err != nil {
		return e.refuse(ReasonPolicyViolation, err)
	}
	return nil
}

// checkNamespace applies a ClusterSCEPProfile's namespaceSelector.
func (e *enrollment) checkNamespace() error {
	cp, ok := e.p.(*scepv1alpha1.ClusterSCEPProfile)
	if !ok || cp.Spec.NamespaceSelector == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(cp.Spec.NamespaceSelector)
	if err != nil {
		// The profile is wrong, not the request: its controller says so.
		return e.pendingf(e.cfg.retryInterval, "the ClusterSCEPProfile's spec.namespaceSelector is invalid: %v", err)
	}
	namespace := e.obj().GetNamespace()
	if namespace == "" {
		// A CertificateSigningRequest is cluster-scoped: no namespace of the
		// selector's can be its own.
		return e.refuse(ReasonNamespaceNotAllowed, fmt.Errorf("ClusterSCEPProfile %s has a spec.namespaceSelector (%s), so it serves only CertificateRequests of the namespaces it selects; a %s has no namespace", cp.Name, sel.String(), e.req.kind()))
	}
	var ns corev1.Namespace
	if err := e.Client.Get(e.ctx, client.ObjectKey{Name: namespace}, &ns); err != nil {
		return fmt.Errorf("reading namespace %s for the ClusterSCEPProfile's namespaceSelector: %w", namespace, err)
	}
	if !sel.Matches(labels.Set(ns.Labels)) {
		return e.refuse(ReasonNamespaceNotAllowed, fmt.Errorf("namespace %s may not use ClusterSCEPProfile %s: its spec.namespaceSelector (%s) does not select this namespace; ask the cluster admin to label the namespace or use another issuer", namespace, cp.Name, sel.String()))
	}
	return nil
}
