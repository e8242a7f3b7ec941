package controllers

import (
	"cmp"
	"context"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	issuercontrollers "github.com/cert-manager/issuer-lib/controllers"
	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/internal/signer"
)

// The operator's permissions, from which config/rbac/role.yaml is generated:
// a ClusterRole, and a Role for Secrets. Secrets and Certificates are read
// uncached (get only, no list or watch), so the operator neither holds every
// Secret of the cluster in memory nor needs the right to list them.
//
// Secrets are never granted cluster-wide. namespace=system is kustomize's
// placeholder for the operator's own namespace (config/default sets it), which
// is the default cluster resource namespace: the Passthrough signer Secrets
// and the ClusterSCEPProfiles' Secrets live there. The Secrets of SCEPProfiles
// in other namespaces and the workload keys that csrMode Rebuild reads are
// granted namespace by namespace: the chart's rbac.secretNamespaces and
// rebuild.namespaces, config/overlays/ for kustomize.
// Namespaces are read for ClusterSCEPProfile's namespaceSelector.
//
// +kubebuilder:rbac:groups=scep.certificates.dev,resources=scepprofiles;clusterscepprofiles,verbs=get;list;watch
// +kubebuilder:rbac:groups=scep.certificates.dev,resources=scepprofiles/status;clusterscepprofiles/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=get;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// FieldOwner is the operator's server-side-apply field manager.
const FieldOwner = "scep-operator"

// Options configure the controllers.
type Options struct {
	// ClusterResourceNamespace holds the Secrets of ClusterSCEPProfiles.
	ClusterResourceNamespace string
	// CheckInterval is the period of profile checks.
	CheckInterval time.Duration
	// ClusterDomain is the value of %domainname%.
	ClusterDomain string
	// MaxRetryDuration bounds issuer-lib's retries of errors the signer did
	// not classify (e.g. Kubernetes API errors). SCEP errors are counted
	// against each profile's maxAttempts instead.
	MaxRetryDuration time.Duration
	// Logger is the root logger.
	Logger logr.Logger
	// MaxConcurrentReconciles is how many CertificateRequests are worked on
	// at once, across profiles. Each profile has at most
	// maxConcurrentRequests of them, capped at ProfileShare, and one while
	// its server does not answer. Zero means DefaultRequestWorkers.
	MaxConcurrentReconciles int
	// ProfileCheckWorkers is how many profiles of each kind are checked at
	// once. Zero means DefaultProfileCheckWorkers.
	ProfileCheckWorkers int
	// RequestTimeout bounds each HTTP round trip to a SCEP server; zero
	// means 30 seconds. A request that times out counts as a failed attempt.
	RequestTimeout time.Duration
	// StateKeySecretName names the Secret, in ClusterResourceNamespace,
	// whose key seals the state the signer keeps on requests; created when
	// missing. Empty means DefaultStateKeySecretName.
	StateKeySecretName string
	// Egress is where profiles' SCEP servers and NDES admin pages may be
	// (--egress-allow-cidrs, --egress-deny-cidrs); nil means
	// egress.Default(): link-local, cloud metadata and unspecified
	// addresses refused.
	Egress *egress.Policy
	// CheckTimeout bounds one profile check (GetCACaps and GetCACert
	// together); zero means RequestTimeout.
	CheckTimeout time.Duration
}

// DefaultStateKeySecretName is the state-key Secret's name unless configured.
const DefaultStateKeySecretName = "scep-operator-request-state"

// Defaults of Options.
const (
	// DefaultRequestWorkers: a server that does not answer holds at most its
	// profile's maxConcurrentRequests (4 by default, never more than
	// ProfileShare: 8 of 32) workers until its breaker opens
	// (profiles.Registry.Admit), then one; 32 leave most of them to the
	// other profiles even with several such servers. A worker is a
	// goroutine; the load on each SCEP server is bounded per profile, not
	// by this number.
	DefaultRequestWorkers = 32
	// DefaultProfileCheckWorkers: a check of a server that does not answer
	// holds a worker for up to CheckTimeout, and a failing profile is
	// checked again every minute or so; four workers per kind keep the
	// other profiles' checks on time with several such servers.
	DefaultProfileCheckWorkers = 4
)

// Setup registers the profile controllers (one per kind) and issuer-lib's
// CertificateRequest controller with the signer, and returns the signer.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) (*signer.Signer, error) {
	registry := &profiles.Registry{
		Reader:                   mgr.GetAPIReader(),
		ClusterResourceNamespace: opts.ClusterResourceNamespace,
		Logger:                   opts.Logger.WithName("scep"),
		Timeout:                  opts.RequestTimeout,
		Egress:                   opts.Egress,
		Observe: func(k profiles.Key, op string, status int, d time.Duration) {
			metrics.ObserveServerRequest(k.String(), op, status, d)
		},
	}
	recorder := mgr.GetEventRecorder("scep-operator")
	checkTimeout := opts.CheckTimeout
	if checkTimeout <= 0 {
		checkTimeout = cmp.Or(opts.RequestTimeout, scepclient.DefaultTimeout)
	}
	for _, newProfile := range []func() scepv1alpha1.Profile{
		func() scepv1alpha1.Profile { return &scepv1alpha1.SCEPProfile{} },
		func() scepv1alpha1.Profile { return &scepv1alpha1.ClusterSCEPProfile{} },
	} {
		r := &ProfileReconciler{Client: mgr.GetClient(), Registry: registry, Recorder: recorder, NewProfile: newProfile, CheckInterval: opts.CheckInterval,
			CheckTimeout: checkTimeout, Workers: cmp.Or(opts.ProfileCheckWorkers, DefaultProfileCheckWorkers)}
		if err := r.SetupWithManager(mgr); err != nil {
			return nil, err
		}
	}
	workers := opts.MaxConcurrentReconciles
	if workers <= 0 {
		workers = DefaultRequestWorkers
	}
	stateSecret := opts.StateKeySecretName
	if stateSecret == "" {
		stateSecret = DefaultStateKeySecretName
	}
	stateKey, err := signer.LoadStateKey(ctx, mgr.GetAPIReader(), mgr.GetClient(), opts.ClusterResourceNamespace, stateSecret)
	if err != nil {
		return nil, err
	}
	sg := &signer.Signer{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Registry:      registry,
		ClusterDomain: opts.ClusterDomain,
		Recorder:      recorder,
		StateKey:      stateKey,
		ProfileShare:  ProfileShare(workers),
	}
	// Runs once this process leads (or at start without leader election):
	// requests created before then are asked about before being sent.
	if err := mgr.Add(leadingSince(sg)); err != nil {
		return nil, err
	}
	crc := &issuercontrollers.CertificateRequestReconciler{
		RequestController: issuercontrollers.RequestController{
			IssuerTypes:        []issuerapi.Issuer{&scepv1alpha1.SCEPProfile{}},
			ClusterIssuerTypes: []issuerapi.Issuer{&scepv1alpha1.ClusterSCEPProfile{}},
			FieldOwner:         FieldOwner,
			MaxRetryDuration:   opts.MaxRetryDuration,
			Client:             mgr.GetClient(),
			Sign:               sg.Sign,
			EventRecorder:      recorder,
			// issuer-lib's CombinedController fills this in; used alone, the
			// request controller needs it set.
			Clock: clock.RealClock{},
			// The signer's own writes of transaction state need no reconcile,
			// nor do requests for other issuers.
			PreSetupWithManager: func(_ context.Context, _ schema.GroupVersionKind, _ ctrl.Manager, b *builder.Builder) error {
				b.WithEventFilter(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
					before, _ := e.ObjectOld.(*cmapi.CertificateRequest)
					after, _ := e.ObjectNew.(*cmapi.CertificateRequest)
					return !signer.OnlyStateChanged(before, after)
				}})
				b.WithEventFilter(predicate.NewPredicateFuncs(ForOurIssuers))
				return nil
			},
		},
		// ca.crt in the Secret: workloads that trust the SCEP CA by it need it.
		SetCAOnCertificateRequest: true, //nolint:staticcheck // ca.crt is how workloads here learn the SCEP CA; trust-manager is optional
		ControllerOptions:         controller.Options{MaxConcurrentReconciles: workers},
	}
	if err := crc.SetupWithManager(ctx, mgr); err != nil {
		return nil, err
	}
	return sg, nil
}

// ForOurIssuers is false for a CertificateRequest addressed to another
// issuer (true for any other object). issuer-lib's request controller
// watches every CertificateRequest of the cluster and ignores the others
// only once it reconciles them: with many requests for other issuers, each
// start queued and reconciled every one of them (10,000 requests: 10,000
// reconciles, their queue entries and log lines), and every update of one
// came back. Its issuerRef group says at once whether it is ours; it cannot
// change (cert-manager makes the spec immutable).
func ForOurIssuers(o client.Object) bool {
	cr, ok := o.(*cmapi.CertificateRequest)
	return !ok || cr.Spec.IssuerRef.Group == scepv1alpha1.GroupVersion.Group
}

// leadingSince tells the signer when this process started to lead. A
// manager.RunnableFunc needs leader election, so it runs exactly then.
func leadingSince(sg *signer.Signer) manager.RunnableFunc {
	return func(ctx context.Context) error {
		sg.StartLeading(time.Now())
		<-ctx.Done()
		return nil
	}
}

// ProfileShare is the most CertificateRequests of one profile worked on at
// once, whatever its maxConcurrentRequests: a quarter of the shared
// workers, and never less than the default maxConcurrentRequests (4).
func ProfileShare(workers int) int32 {
	return int32(max(4, workers/4))
}
