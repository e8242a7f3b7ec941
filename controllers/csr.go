package controllers

import (
	"context"
	"strings"

	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	issuercontrollers "github.com/cert-manager/issuer-lib/controllers"
	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/signer"
)

// Kubernetes CertificateSigningRequests whose spec.signerName names a
// profile: clusterscepprofiles.scep.certificates.dev/<name> and
// scepprofiles.scep.certificates.dev/<namespace>.<name>. The operator reads
// them, patches its sealed state annotation on them, writes their status
// (the certificate, the Failed condition), signs them for its own
// signerNames only, and asks SubjectAccessReviews about their requesters.
//
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/status,verbs=update;patch
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,resourceNames=clusterscepprofiles.scep.certificates.dev/*;scepprofiles.scep.certificates.dev/*,verbs=sign
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// signerNameIndex indexes cached CSRs by spec.signerName, so that a
// SCEPProfile's change reaches the CSRs that name it.
const signerNameIndex = "spec.signerName"

// setupCertificateSigningRequests registers issuer-lib's
// CertificateSigningRequest controller with the signer.
//
// issuer-lib serves cluster issuers only ("namespaced issuers are not
// supported for Kubernetes CSRs"): it reads the issuer of signerName
// <type>/<id> as the cluster-scoped object named <id>. SCEPProfiles are
// given to it as such, and profileClient turns <namespace>.<name> into the
// SCEPProfile's key (a namespace name has no dot, so the first dot splits
// it exactly, as cert-manager's own signerNames do). Its issuer watch
// cannot link a SCEPProfile to those CSRs, so a watch here does. Who may
// name a SCEPProfile from a cluster-scoped CSR is the signer's decision
// (internal/signer, the "reference" check), made on every call.
func setupCertificateSigningRequests(ctx context.Context, mgr ctrl.Manager, sg *signer.Signer, recorder events.EventRecorder, opts Options, workers int) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &certificatesv1.CertificateSigningRequest{}, signerNameIndex, func(o client.Object) []string {
		csr, ok := o.(*certificatesv1.CertificateSigningRequest)
		if !ok || !strings.HasPrefix(csr.Spec.SignerName, scepProfileSigner) {
			return nil
		}
		return []string{csr.Spec.SignerName}
	}); err != nil {
		return err
	}
	rc := requestController(profileClient{mgr.GetClient()}, sg.SignCertificateSigningRequest, recorder, opts)
	rc.ClusterIssuerTypes = []issuerapi.Issuer{&scepv1alpha1.ClusterSCEPProfile{}, &scepv1alpha1.SCEPProfile{}}
	rc.PreSetupWithManager = func(_ context.Context, _ schema.GroupVersionKind, mgr ctrl.Manager, b *builder.Builder) error {
		b.WithEventFilter(stateWriteFilter())
		b.WithEventFilter(predicate.NewPredicateFuncs(ForOurSigners))
		b.Watches(&scepv1alpha1.SCEPProfile{}, handler.EnqueueRequestsFromMapFunc(csrsNaming(mgr.GetCache())))
		return nil
	}
	r := &issuercontrollers.CertificateSigningRequestReconciler{
		RequestController: rc,
		ControllerOptions: controller.Options{MaxConcurrentReconciles: workers},
	}
	return r.SetupWithManager(ctx, mgr)
}

// The signerName prefixes of the two profile kinds.
var (
	scepProfileSigner        = (&scepv1alpha1.SCEPProfile{}).GetIssuerTypeIdentifier() + "/"
	clusterSCEPProfileSigner = (&scepv1alpha1.ClusterSCEPProfile{}).GetIssuerTypeIdentifier() + "/"
)

// SignerName is the spec.signerName of a CertificateSigningRequest for p.
func SignerName(p scepv1alpha1.Profile) string {
	if p.GetNamespace() == "" {
		return p.GetIssuerTypeIdentifier() + "/" + p.GetName()
	}
	return p.GetIssuerTypeIdentifier() + "/" + p.GetNamespace() + "." + p.GetName()
}

// csrsNaming maps a SCEPProfile to the CSRs whose signerName names it.
func csrsNaming(r client.Reader) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		p, ok := o.(*scepv1alpha1.SCEPProfile)
		if !ok {
			return nil
		}
		var list certificatesv1.CertificateSigningRequestList
		if err := r.List(ctx, &list, client.MatchingFields{signerNameIndex: SignerName(p)}); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
		return reqs
	}
}

// profileClient reads the SCEPProfile that issuer-lib asks for by the
// cluster-scoped key <namespace>.<name> from its namespace.
type profileClient struct{ client.Client }

// Get implements client.Reader.
func (c profileClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*scepv1alpha1.SCEPProfile); ok && key.Namespace == "" {
		ns, name, found := strings.Cut(key.Name, ".")
		if !found || ns == "" || name == "" {
			// Not <namespace>.<name>: no such profile.
			ns, name = "", key.Name
		}
		key = client.ObjectKey{Namespace: ns, Name: name}
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// ourSignerName says whether a CSR's signerName names a profile kind.
func ourSignerName(name string) bool {
	return strings.HasPrefix(name, scepProfileSigner) || strings.HasPrefix(name, clusterSCEPProfileSigner)
}

// ForOurSigners is false for a CertificateSigningRequest for another signer
// (true for any other object): the kubelets' and other issuers' CSRs are
// never queued, as ForOurIssuers keeps other issuers' CertificateRequests
// out. A CSR's spec is immutable, so its signerName says it once.
func ForOurSigners(o client.Object) bool {
	csr, ok := o.(*certificatesv1.CertificateSigningRequest)
	return !ok || ourSignerName(csr.Spec.SignerName)
}

// TrimForeignCSR is a cache transform: of a CertificateSigningRequest for
// another signer it keeps only what identifies it and its signerName, all
// that routing reads (as TrimForeignRequest does for CertificateRequests).
func TrimForeignCSR(obj any) (any, error) {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return obj, nil
	}
	csr.ManagedFields = nil
	if ourSignerName(csr.Spec.SignerName) {
		return csr, nil
	}
	trimmed := &certificatesv1.CertificateSigningRequest{TypeMeta: csr.TypeMeta}
	trimmed.Name, trimmed.UID = csr.Name, csr.UID
	trimmed.ResourceVersion, trimmed.Generation = csr.ResourceVersion, csr.Generation
	trimmed.CreationTimestamp, trimmed.DeletionTimestamp = csr.CreationTimestamp, csr.DeletionTimestamp
	trimmed.Spec.SignerName = csr.Spec.SignerName
	return trimmed, nil
}
