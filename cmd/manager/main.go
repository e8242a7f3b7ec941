// Command manager runs scep-operator: the SCEPProfile and ClusterSCEPProfile
// controllers and the cert-manager external issuer that enrolls
// CertificateRequests over SCEP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/version"
)

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

// serviceAccountNamespace is where a pod's namespace is mounted.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func defaultNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "scep-operator"
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	var (
		metricsAddr, probeAddr, pprofAddr, clusterNS, clusterDomain, leaderNS string
		metricsCertPath                                                       string
		leaderElect, apiCompression, metricsSecure, serveCSRs                 bool
		checkInterval, maxRetry, requestTimeout                               time.Duration
		leaseDuration, renewDeadline, retryPeriod                             time.Duration
		workers, checkWorkers                                                 int
		egressAllow, egressDeny                                               string
		caBundles                                                             controllers.CABundleOptions
	)
	fs.StringVar(&metricsAddr, "metrics-bind-address", "", "address of the Prometheus /metrics endpoint (default :8443, or :8080 with --metrics-secure=false; 0 disables it)")
	fs.BoolVar(&metricsSecure, "metrics-secure", true, "serve /metrics over HTTPS to clients whose bearer token may get /metrics (a TokenReview and a SubjectAccessReview per client); false serves plain HTTP to anyone")
	fs.StringVar(&metricsCertPath, "metrics-cert-path", "", "directory holding the metrics endpoint's tls.crt and tls.key (e.g. a mounted kubernetes.io/tls Secret, reloaded on change); empty: a self-signed certificate made at start")
	fs.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&pprofAddr, "pprof-bind-address", "", "address of Go's /debug/pprof endpoints, for profiling (empty disables them)")
	fs.BoolVar(&leaderElect, "leader-elect", false, "elect one active manager (needed with more than one replica)")
	fs.StringVar(&leaderNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: the cluster resource namespace)")
	fs.DurationVar(&leaseDuration, "leader-election-lease-duration", 15*time.Second, "how long followers wait before taking over a Lease that was not renewed")
	fs.DurationVar(&renewDeadline, "leader-election-renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it gives up leading")
	fs.DurationVar(&retryPeriod, "leader-election-retry-period", 2*time.Second, "how often candidates try to acquire or renew the Lease")
	fs.DurationVar(&requestTimeout, "scep-request-timeout", 30*time.Second, "bound of each HTTP round trip to a SCEP server; a timed-out attempt counts against maxAttempts")
	fs.StringVar(&clusterNS, "cluster-resource-namespace", defaultNamespace(), "namespace holding the Secrets of ClusterSCEPProfiles (default: the operator's own)")
	fs.DurationVar(&checkInterval, "profile-check-interval", 10*time.Minute, "how often each profile's SCEP server is checked (jittered ±10%)")
	fs.StringVar(&clusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain, the value of %domainname%")
	fs.DurationVar(&maxRetry, "max-retry-duration", 24*time.Hour, "how long issuer-lib retries errors that are not SCEP errors (those count against maxAttempts)")
	fs.BoolVar(&apiCompression, "kube-api-compression", false, "ask the Kubernetes API server to gzip its responses and watch streams (off: on a cluster's network gzip costs CPU on both sides and adds latency, which is why Kubernetes' own control-plane components turn it off)")
	fs.IntVar(&workers, "max-concurrent-reconciles", controllers.DefaultRequestWorkers, "CertificateRequests worked on at once, across profiles (each profile also has maxConcurrentRequests, and 1 while its server does not answer)")
	fs.IntVar(&checkWorkers, "profile-check-workers", controllers.DefaultProfileCheckWorkers, "profiles of each kind checked at once (a check of a server that does not answer takes up to --scep-request-timeout)")
	fs.StringVar(&egressAllow, "egress-allow-cidrs", "", "comma-separated CIDRs that profiles' SCEP servers and NDES admin pages may be in; empty allows every address the deny list does not refuse (checked on the address connected to, after DNS resolution; the most specific matching CIDR decides)")
	fs.StringVar(&caBundles.Namespace, "ca-bundle-namespace", "", "trust namespace (trust-manager's, cert-manager by default) where each ClusterSCEPProfile's CA certificates are published in a ConfigMap labelled scep.certificates.dev/ca-bundle, for a trust-manager Bundle; empty publishes nothing")
	fs.BoolVar(&caBundles.NamespacedProfiles, "ca-bundle-namespaced-profiles", false, "publish SCEPProfiles' CA certificates too (label value \"namespaced\"): whoever may create a SCEPProfile then chooses a CA that lands in the trust namespace")
	fs.BoolVar(&caBundles.ClusterTrustBundles, "cluster-trust-bundles", false, "write each ClusterSCEPProfile's CA certificates in a ClusterTrustBundle (certificates.k8s.io/v1, Kubernetes 1.37) named for its signer clusterscepprofiles.scep.certificates.dev/<name>, for projected clusterTrustBundle volumes; needs attest on those signers")
	fs.StringVar(&egressDeny, "egress-deny-cidrs", "", "comma-separated CIDRs that profiles' servers may not be in, beside the built-in ones (link-local 169.254.0.0/16 and fe80::/10, the cloud metadata addresses fd00:ec2::254 and 100.100.100.200, and the unspecified 0.0.0.0/8 and ::), which only a more specific --egress-allow-cidrs entry reopens")
	fs.BoolVar(&serveCSRs, "serve-certificate-signing-requests", true, "serve Kubernetes CertificateSigningRequests whose signerName names a profile (clusterscepprofiles.scep.certificates.dev/<name>, scepprofiles.scep.certificates.dev/<namespace>.<name>); false needs no RBAC on CSRs, signers or SubjectAccessReviews")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	config.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	metricsOpts, err := metricsOptions(metricsAddr, metricsSecure, metricsCertPath)
	if err != nil {
		return err
	}
	logger := zap.New(zap.UseFlagOptions(&zapOpts))
	ctrl.SetLogger(logger)
	if leaderNS == "" {
		leaderNS = clusterNS
	}
	egressPolicy, err := egress.Parse(egressAllow, egressDeny)
	if err != nil {
		return err
	}

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme, scepv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg.DisableCompression = !apiCompression
	cacheOpts := controllers.CacheOptions()
	if err := requestsSelectable(ctx, cfg, scheme); err != nil {
		cacheOpts = controllers.UnselectedCacheOptions()
		logger.Info("the API server cannot select CertificateRequests by spec.issuerRef.group (cert-manager before 1.20, or Kubernetes before 1.31): every request is cached, those of other issuers trimmed", "reason", err.Error())
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        pprofAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "scep-operator.scep.certificates.dev",
		LeaderElectionNamespace: leaderNS,
		LeaseDuration:           &leaseDuration,
		RenewDeadline:           &renewDeadline,
		RetryPeriod:             &retryPeriod,
		// main returns as soon as the manager stops, so the Lease can be
		// released at once and a rolling update hands over without waiting
		// for it to expire.
		LeaderElectionReleaseOnCancel: true,
		Client:                        controllers.ClientOptions(),
		Cache:                         cacheOpts,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if _, err := controllers.Setup(ctx, mgr, controllers.Options{
		ClusterResourceNamespace: clusterNS,
		CheckInterval:            checkInterval,
		ClusterDomain:            clusterDomain,
		MaxRetryDuration:         maxRetry,
		Logger:                   logger,
		MaxConcurrentReconciles:  workers,
		ProfileCheckWorkers:      checkWorkers,
		RequestTimeout:           requestTimeout,
		Egress:                   egressPolicy,
		CABundle:                 caBundles,

		DisableCertificateSigningRequests: !serveCSRs,
	}); err != nil {
		return fmt.Errorf("setting up the controllers: %w", err)
	}
	if err := mgr.Add(startupMemory{cache: mgr.GetCache()}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	logger.Info("starting scep-operator", "version", version.Version(), "revision", version.Revision(),
		"clusterResourceNamespace", clusterNS, "profileCheckInterval", checkInterval,
		"egressAllowCIDRs", egressAllow, "egressDenyCIDRs", egressDeny)
	return mgr.Start(ctx)
}

// requestsSelectable asks the API server, once at start, whether it can
// select CertificateRequests by issuer group (controllers.ServerSelectsRequests).
func requestsSelectable(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme) error {
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return controllers.ServerSelectsRequests(ctx, c)
}
