package signer

import (
	"errors"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	experimentalapi "github.com/cert-manager/cert-manager/pkg/apis/experimental/v1alpha1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/internal/policy"
)

// request is the object one enrollment is for: a cert-manager
// CertificateRequest (namespaced, made by a tenant or by cert-manager for a
// Certificate) or a Kubernetes CertificateSigningRequest (cluster-scoped,
// whose spec.username the API server sets and which an approver approved).
// Everything else in the package (policy, attempts, PENDING polls, the
// sealed state, resume after a restart) is the same for both.
type request interface {
	// object is the API object itself: read, patched (the state
	// annotation), and the regarding object of Events.
	object() client.Object
	// kind names the resource in messages.
	kind() string
	// id is the key of the request in this process's bookkeeping.
	id() string
	// csrPEM is the PEM PKCS#10 request.
	csrPEM() []byte
	// isCA: the request asks for a CA certificate besides what its CSR says.
	isCA() bool
	// variables are the policy's variables for this request.
	variables(clusterDomain string) policy.Variables
	// finished returns the issued chain, or the failure message, of a
	// request that an earlier call finished; done is false otherwise.
	finished() (bundle signer.PEMBundle, done bool, failure error)
	// looksFinished: a cached copy shows the request issued or failed,
	// perhaps not yet completely; it is read fresh before anything else.
	looksFinished() bool
}

// certificateRequest is a cert-manager CertificateRequest.
type certificateRequest struct{ *cmapi.CertificateRequest }

func (r certificateRequest) object() client.Object { return r.CertificateRequest }
func (certificateRequest) kind() string            { return "CertificateRequest" }
func (r certificateRequest) id() string            { return r.Namespace + "/" + r.Name }
func (r certificateRequest) csrPEM() []byte        { return r.Spec.Request }
func (r certificateRequest) isCA() bool            { return r.Spec.IsCA }

func (r certificateRequest) variables(clusterDomain string) policy.Variables {
	return policy.VariablesFor(r.CertificateRequest, clusterDomain)
}

func (r certificateRequest) finished() (signer.PEMBundle, bool, error) {
	ready := readyCondition(r.CertificateRequest)
	switch {
	case ready == nil:
		return signer.PEMBundle{}, false, nil
	case ready.Status == cmmeta.ConditionTrue && len(r.Status.Certificate) > 0:
		return signer.PEMBundle{ChainPEM: r.Status.Certificate, CAPEM: r.Status.CA}, true, nil
	case ready.Reason == cmapi.CertificateRequestReasonFailed:
		// issuer-lib prefixes the message again when it applies it.
		return signer.PEMBundle{}, true, errors.New(strings.TrimPrefix(ready.Message, failedPrefix))
	}
	return signer.PEMBundle{}, false, nil
}

func (r certificateRequest) looksFinished() bool {
	ready := readyCondition(r.CertificateRequest)
	return ready != nil && (ready.Status == cmmeta.ConditionTrue || ready.Reason == cmapi.CertificateRequestReasonFailed)
}

// kubeCSR is a Kubernetes CertificateSigningRequest.
type kubeCSR struct {
	*certificatesv1.CertificateSigningRequest
}

func (r kubeCSR) object() client.Object { return r.CertificateSigningRequest }
func (kubeCSR) kind() string            { return "CertificateSigningRequest" }

// id cannot collide with a CertificateRequest's, which always has a
// namespace before its slash.
func (r kubeCSR) id() string     { return "/" + r.Name }
func (r kubeCSR) csrPEM() []byte { return r.Spec.Request }

// isCA reads cert-manager's annotation, as issuer-lib does for CSRs.
func (r kubeCSR) isCA() bool {
	return r.Annotations[experimentalapi.CertificateSigningRequestIsCAAnnotationKey] == "true"
}

// variables of a CSR: it has no namespace and no Certificate, so
// %namespace%, %certificatename% and %devicename% have no value (a
// profile whose templates need them refuses every CSR). %username% is
// spec.username, which the API server sets to the requester's.
func (r kubeCSR) variables(clusterDomain string) policy.Variables {
	vars := policy.Variables{"requestname": r.Name, "domainname": clusterDomain}
	if r.Spec.Username != "" {
		vars["username"] = r.Spec.Username
	}
	if email := r.Annotations[policy.EmailAnnotation]; email != "" {
		vars["email"] = email
	}
	return vars
}

func (r kubeCSR) finished() (signer.PEMBundle, bool, error) {
	if len(r.Status.Certificate) > 0 {
		return signer.PEMBundle{ChainPEM: r.Status.Certificate}, true, nil
	}
	if c := CSRFailed(r.CertificateSigningRequest); c != nil {
		return signer.PEMBundle{}, true, errors.New(strings.TrimPrefix(c.Message, failedPrefixCSR))
	}
	return signer.PEMBundle{}, false, nil
}

// CSRFailed returns csr's Failed condition when it is True, else nil: how a
// CertificateSigningRequest says that its signer gave up on it.
func CSRFailed(csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequestCondition {
	for i, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateFailed && c.Status == corev1.ConditionTrue {
			return &csr.Status.Conditions[i]
		}
	}
	return nil
}

func (r kubeCSR) looksFinished() bool {
	_, done, _ := r.finished()
	return done
}

// failedPrefixCSR is what issuer-lib puts before a permanent error's
// message on a CertificateSigningRequest.
const failedPrefixCSR = "CertificateSigningRequest has failed permanently: "
