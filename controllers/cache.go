package controllers

import (
	"context"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// CacheOptions keep the manager's memory proportional to the requests it
// serves, not to all CertificateRequests of the cluster: managedFields are
// dropped from every cached object, and the API server sends only the
// requests addressed to this operator's issuers. They need an API server
// that can select requests so (ServerSelectsRequests); for one that
// cannot, UnselectedCacheOptions.
func CacheOptions() cache.Options { return cacheOptions(true) }

// UnselectedCacheOptions are CacheOptions for an API server that cannot
// select CertificateRequests by issuer group: every request is cached, and
// those of other issuers keep only their identity and issuerRef
// (TrimForeignRequest).
func UnselectedCacheOptions() cache.Options { return cacheOptions(false) }

func cacheOptions(serverSelects bool) cache.Options {
	requests := cache.ByObject{Transform: TrimRequest}
	if serverSelects {
		requests.Field = requestSelector
	}
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&cmapi.CertificateRequest{}:                 requests,
			&certificatesv1.CertificateSigningRequest{}: {Transform: TrimForeignCSR},
		},
	}
}

// requestSelector selects the CertificateRequests addressed to this
// operator's issuers (SCEPProfile and ClusterSCEPProfile share the group).
var requestSelector = fields.OneTermEqualSelector("spec.issuerRef.group", scepv1alpha1.GroupVersion.Group)

// ServerSelectsRequests returns nil when the API server can select
// CertificateRequests by spec.issuerRef.group, so that the operator's
// watch never carries another issuer's request: cert-manager 1.20 and
// later declare spec.issuerRef.{group,kind,name} as selectableFields of
// their CRD (served by Kubernetes 1.31 and later). An older CRD answers
// 400 ("field label not supported"); the operator then caches every
// request and trims the foreign ones.
func ServerSelectsRequests(ctx context.Context, c client.Reader) error {
	var list cmapi.CertificateRequestList
	return c.List(ctx, &list, client.MatchingFieldsSelector{Selector: requestSelector}, client.Limit(1))
}

// ClientOptions make Secrets and Certificates read straight from the API
// server: no cluster-wide informer holds every Secret in memory, and the
// operator needs only "get" on them.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{
		DisableFor: []client.Object{&corev1.Secret{}, &cmapi.Certificate{}},
	}}
}

// TrimRequest is the cache transform of CertificateRequests: another
// issuer's request keeps only its identity and issuerRef
// (TrimForeignRequest), and one of ours that is finished loses its CSR and
// certificates (TrimFinishedRequest).
func TrimRequest(obj any) (any, error) {
	obj, err := TrimForeignRequest(obj)
	if err != nil {
		return nil, err
	}
	return TrimFinishedRequest(obj)
}

// TrimFinishedRequest is a cache transform: of a CertificateRequest that is
// Ready, Failed or Denied it drops the CSR and the issued certificate and
// CA, the bulk of the object. Nothing reads them from the cache once the
// request is finished: issuer-lib ignores such a request on its conditions
// alone, and the signer reads a request afresh from the API server when
// the cached copy looks finished. Kept whole, every issued request of the
// cluster's history stayed in the operator's memory (about 15 KB each in
// the 10,000-Certificate run). Conditions, metadata and the rest of the
// spec stay, so kubectl-like reads of the cache still say what happened.
func TrimFinishedRequest(obj any) (any, error) {
	cr, ok := obj.(*cmapi.CertificateRequest)
	if !ok || !finished(cr) {
		return obj, nil
	}
	cr.Spec.Request = nil
	cr.Status.Certificate, cr.Status.CA = nil, nil
	return cr, nil
}

// finished says whether issuer-lib would ignore cr for good: Ready, or not
// Ready with reason Failed or Denied.
func finished(cr *cmapi.CertificateRequest) bool {
	for _, c := range cr.Status.Conditions {
		if c.Type != cmapi.CertificateRequestConditionReady {
			continue
		}
		return c.Status == cmmeta.ConditionTrue ||
			(c.Status == cmmeta.ConditionFalse && (c.Reason == cmapi.CertificateRequestReasonFailed || c.Reason == cmapi.CertificateRequestReasonDenied))
	}
	return false
}

// TrimForeignRequest is a cache transform: of a CertificateRequest addressed
// to another issuer it keeps only what identifies it and its issuerRef,
// which is all the request controller reads before it ignores the request
// (issuer-lib's predicates route by issuerRef). Its CSR, certificates,
// annotations, labels, owners, conditions and the rest of its spec are
// dropped: with many such requests in a cluster they were most of the
// operator's memory.
func TrimForeignRequest(obj any) (any, error) {
	cr, ok := obj.(*cmapi.CertificateRequest)
	if !ok {
		return obj, nil
	}
	cr.ManagedFields = nil
	if cr.Spec.IssuerRef.Group == scepv1alpha1.GroupVersion.Group {
		return cr, nil
	}
	trimmed := &cmapi.CertificateRequest{TypeMeta: cr.TypeMeta}
	trimmed.Namespace, trimmed.Name, trimmed.UID = cr.Namespace, cr.Name, cr.UID
	trimmed.ResourceVersion, trimmed.Generation = cr.ResourceVersion, cr.Generation
	trimmed.CreationTimestamp, trimmed.DeletionTimestamp = cr.CreationTimestamp, cr.DeletionTimestamp
	trimmed.Spec.IssuerRef = cr.Spec.IssuerRef
	return trimmed, nil
}
