// Package certmanager runs cert-manager's real controllers in-process against
// any API server (typically envtest), so the operator's tests and demo can
// exercise the full Certificate → CertificateRequest → Secret flow without a
// cluster or container images.
//
// cert-manager's controller binary (cmd/controller) is a separate Go module the
// module proxy does not serve, but the controllers themselves live in the main
// module under pkg/controller and register themselves with
// controllerpkg.Register in init(). This package does what the binary's
// app.Run does, minus leader election, metrics, healthz and pprof servers.
//
// Only the controllers needed for Certificates are run: no ACME, Vault, Venafi,
// ingress/gateway shims or CertificateSigningRequest controllers. cert-manager's
// webhook is not run either, so nothing validates or defaults resources on
// admission, and nothing checks the `approve` permission on `signers` that the
// webhook demands in a real cluster before a request may be approved.
package certmanager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	crapprover "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// The issuers and clusterissuers controllers set up (and mark Ready) the
	// issuer types registered with pkg/issuer; these two register CA and
	// SelfSigned, the only built-in issuers this package supports.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// DefaultClusterResourceNamespace is where cluster-scoped issuers (ClusterIssuer)
// look for their Secrets unless Options says otherwise. cert-manager's own
// default is kube-system; its Helm chart sets the release namespace, which is
// conventionally "cert-manager", and that is what our charts and docs assume.
const DefaultClusterResourceNamespace = "cert-manager"

// DefaultWorkers is the number of workers per controller, as in cert-manager's
// --concurrent-workers default.
const DefaultWorkers = 5

// cacheSyncTimeout bounds how long Start waits for the informers to list.
// Listing only fails to finish when something is structurally wrong (above all,
// cert-manager's CRDs are not installed), so failing fast with a hint beats
// hanging until the caller's context ends.
const cacheSyncTimeout = time.Minute

// DefaultControllers returns the names of the controllers Start runs when
// Options.Controllers is nil: the whole Certificate lifecycle (trigger, key
// manager, request manager, issuing, readiness, revision manager), the
// CertificateRequest approver, the CA and SelfSigned signers, and the Issuer
// and ClusterIssuer controllers that mark those issuers Ready. It is a fresh
// slice on every call, so callers may append to it.
func DefaultControllers() []string {
	return []string{
		trigger.ControllerName,         // certificates-trigger
		issuing.ControllerName,         // certificates-issuing
		keymanager.ControllerName,      // certificates-key-manager
		requestmanager.ControllerName,  // certificates-request-manager
		readiness.ControllerName,       // certificates-readiness
		revisionmanager.ControllerName, // certificates-revision-manager
		crapprover.ControllerName,      // certificaterequests-approver
		crca.CRControllerName,          // certificaterequests-issuer-ca
		crselfsigned.CRControllerName,  // certificaterequests-issuer-selfsigned
		issuers.ControllerName,         // issuers
		clusterissuers.ControllerName,  // clusterissuers
	}
}

// KnownControllers returns the sorted names of every controller registered
// with cert-manager's controller package in this binary, i.e. what
// Options.Controllers may name. It is the set linked in by this package's
// imports, not everything cert-manager has.
func KnownControllers() []string {
	names := make([]string, 0, len(controllerpkg.Known()))
	for n := range controllerpkg.Known() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DefaultCopiedAnnotationPrefixes is cert-manager's default for
// --copied-annotation-prefixes: every annotation of a Certificate is copied to
// its CertificateRequests except those written by kubectl, Flux and Argo CD.
// The operator relies on this to see annotations such as
// scep.certificates.dev/email on the request it signs.
func DefaultCopiedAnnotationPrefixes() []string {
	return []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"}
}

// Options configure Start. The zero value is usable.
type Options struct {
	// ClusterResourceNamespace is where ClusterIssuers keep their Secrets
	// (a CA ClusterIssuer's key pair, for instance). Start creates it if it
	// is missing. Empty means DefaultClusterResourceNamespace.
	ClusterResourceNamespace string

	// Controllers are the names of the controllers to run (see
	// KnownControllers); nil means DefaultControllers(). An unknown name is an
	// error rather than silently ignored, because a typo would otherwise show
	// up only as a Certificate that never becomes Ready.
	Controllers []string

	// Logger receives cert-manager's logs. cert-manager logs through logr
	// at klog-style verbosities (0 errors, 1 warnings, 2 info, 3 extended
	// info, 4 debug, 5 trace), so the sink's verbosity decides how chatty it
	// is. The zero value discards everything, which keeps test output quiet.
	//
	// Errors that client-go reports itself (reflector and event-sink
	// failures, typically while the API server shuts down) go to klog's
	// process-wide logger, which this package deliberately leaves alone;
	// redirect it with klog.SetLogger if needed.
	Logger logr.Logger

	// Verbose, when Logger is unset, writes cert-manager's errors, warnings
	// and info-level messages (verbosity ≤ 2) to stderr with timestamps:
	// enough to follow each issuance from a demo program without wiring a
	// logger. Ignored when Logger is set.
	Verbose bool

	// Workers is the number of concurrent workers per controller; zero means
	// DefaultWorkers.
	Workers int

	// CopiedAnnotationPrefixes selects which Certificate annotations are
	// copied to its CertificateRequests (prefix match, "*" for all, a leading
	// "-" excludes). nil means DefaultCopiedAnnotationPrefixes(); an empty
	// non-nil slice copies none. cert-manager's controller applies this
	// default in its flag parsing, not in the controllers, so without it
	// nothing would be copied.
	CopiedAnnotationPrefixes []string

	// CertificateRequestMinimumBackoff is how long cert-manager waits after a
	// failed issuance before trying again (doubling per failure up to
	// CertificateRequestMaximumBackoff). Zero, unlike cert-manager's 1h
	// default, means no backoff: a failed issuance is retried as soon as the
	// trigger controller sees it, which is what tests of failure and recovery
	// want. Beware that an issuer that keeps failing then makes cert-manager
	// create CertificateRequests in a tight loop.
	CertificateRequestMinimumBackoff time.Duration

	// CertificateRequestMaximumBackoff caps the backoff. Zero means 32 times
	// the minimum (cert-manager's 1h→32h ratio).
	CertificateRequestMaximumBackoff time.Duration

	// EnableCertificateOwnerRef makes each Certificate the owner of its
	// Secret, as cert-manager's --enable-certificate-owner-ref does.
	EnableCertificateOwnerRef bool

	// MetricsListener, when set, serves cert-manager's own Prometheus
	// metrics on /metrics (what its controller serves on :9402, such as
	// certmanager_controller_sync_call_count by controller) until the
	// controllers stop (or Start fails); Start closes it then. Benchmarks
	// count reconciles with it.
	MetricsListener net.Listener
}

// Start runs cert-manager's real controllers against the API server at cfg
// until ctx ends or stop is called. It returns once the controllers'
// informers have synced, so objects created afterwards are seen. cert-manager's
// CRDs must already be installed (test/envtest installs them).
//
// stop cancels the controllers, waits for them and their informers to return
// and removes the temporary kubeconfig; it is idempotent and also right to call
// after ctx has ended. When ctx ends without stop being called, the same
// cleanup happens in the background.
//
// cert-manager gives every controller an event broadcaster it never shuts
// down, so a few goroutines per controller outlive stop; they are idle once
// their pending events are written or dropped.
func Start(ctx context.Context, cfg *rest.Config, opts Options) (stop func(), err error) {
	if opts.MetricsListener != nil {
		defer func() {
			if err != nil {
				_ = opts.MetricsListener.Close()
			}
		}()
	}
	if cfg == nil {
		return nil, errors.New("certmanager: nil rest.Config")
	}
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	log := opts.Logger

	if err := ensureNamespace(ctx, cfg, opts.ClusterResourceNamespace); err != nil {
		return nil, err
	}

	// cert-manager's ContextFactory only accepts a kubeconfig path or an API
	// server host (it builds its own rest.Config, with its user agent and rate
	// limiter), so hand it cfg as a file.
	kubeconfig, err := writeKubeconfig(cfg)
	if err != nil {
		return nil, err
	}

	// cert-manager finds its logger in the context (pkg/logs.FromContext);
	// without one it would fall back to klog's global logger.
	runCtx, cancel := context.WithCancel(logr.NewContext(ctx, log.WithName("cert-manager")))
	fail := func(err error) (func(), error) {
		cancel()
		_ = os.Remove(kubeconfig)
		return nil, err
	}

	minBackoff, maxBackoff := opts.CertificateRequestMinimumBackoff, opts.CertificateRequestMaximumBackoff
	factory, err := controllerpkg.NewContextFactory(runCtx, controllerpkg.ContextOptions{
		Kubeconfig: kubeconfig,
		// cert-manager's defaults. They only apply when the API server does
		// not do API Priority and Fairness; envtest's does, and then
		// cert-manager turns client-side rate limiting off.
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace: opts.ClusterResourceNamespace,
			// cert-manager's defaults; they only matter to ACME, Vault and
			// Venafi issuers, which are not run here.
			ClusterIssuerAmbientCredentials: true,
		},
		CertificateOptions: controllerpkg.CertificateOptions{
			EnableOwnerRef:                           opts.EnableCertificateOwnerRef,
			CopiedAnnotationPrefixes:                 opts.CopiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: minBackoff,
			CertificateRequestMaximumBackoffDuration: maxBackoff,
		},
	})
	if err != nil {
		return fail(fmt.Errorf("certmanager: building controller context: %w", err))
	}

	// The informer factories are shared by every Context the factory builds;
	// this one is only a handle on them.
	base, err := factory.Build()
	if err != nil {
		return fail(fmt.Errorf("certmanager: building controller context: %w", err))
	}

	// Every constructor must run before the informer factories start: each
	// one asks the factories for the informers it needs, and a factory only
	// starts informers that were asked for before Start.
	type named struct {
		name string
		ctrl controllerpkg.Interface
	}
	ctrls := make([]named, 0, len(opts.Controllers))
	for _, n := range opts.Controllers {
		c, err := controllerpkg.Known()[n](factory)
		if err != nil {
			return fail(fmt.Errorf("certmanager: constructing controller %s: %w", n, err))
		}
		ctrls = append(ctrls, named{n, c})
	}

	var metricsServer *http.Server
	if opts.MetricsListener != nil {
		metricsServer = base.Metrics.NewServer(opts.MetricsListener)
		go func() {
			if err := metricsServer.Serve(opts.MetricsListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error(err, "serving cert-manager's metrics")
			}
		}()
	}

	var wg sync.WaitGroup
	for _, c := range ctrls {
		wg.Go(func() {
			log.V(2).Info("starting cert-manager controller", "controller", c.name)
			if err := c.ctrl.Run(opts.Workers, runCtx); err != nil && runCtx.Err() == nil {
				// Run only fails when its caches never sync, which Start
				// reports below; log it for the record.
				log.Error(err, "cert-manager controller stopped", "controller", c.name)
			}
		})
	}
	base.SharedInformerFactory.Start(runCtx.Done())
	base.KubeSharedInformerFactory.Start(runCtx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(runCtx.Done())

	// Cleanup runs exactly once, whether stop is called or ctx ends.
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-runCtx.Done()
		wg.Wait()
		if metricsServer != nil {
			_ = metricsServer.Close()
		}
		// Shutdown waits for the informers' goroutines to return.
		base.HTTP01ResourceMetadataInformersFactory.Shutdown()
		base.KubeSharedInformerFactory.Shutdown()
		base.SharedInformerFactory.Shutdown()
		if err := os.Remove(kubeconfig); err != nil && !os.IsNotExist(err) {
			log.Error(err, "removing temporary kubeconfig", "path", kubeconfig)
		}
	}()
	stop = func() {
		cancel()
		<-done
	}

	if err := waitForCacheSync(runCtx, base); err != nil {
		stop()
		return nil, err
	}
	log.V(2).Info("cert-manager controllers running", "controllers", opts.Controllers)
	return stop, nil
}

// withDefaults fills in defaults and rejects unknown controller names.
func (o Options) withDefaults() (Options, error) {
	if o.ClusterResourceNamespace == "" {
		o.ClusterResourceNamespace = DefaultClusterResourceNamespace
	}
	if o.Controllers == nil {
		o.Controllers = DefaultControllers()
	}
	if len(o.Controllers) == 0 {
		return o, errors.New("certmanager: Options.Controllers is empty (nil means the defaults)")
	}
	var unknown []string
	for _, n := range o.Controllers {
		if _, ok := controllerpkg.Known()[n]; !ok {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return o, fmt.Errorf("certmanager: unknown controllers %q; known: %s", unknown, strings.Join(KnownControllers(), ", "))
	}
	o.Controllers = slices.Compact(slices.Sorted(slices.Values(o.Controllers)))
	if o.Logger.GetSink() == nil {
		if o.Verbose {
			o.Logger = stderrLogger()
		} else {
			o.Logger = logr.Discard()
		}
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.CopiedAnnotationPrefixes == nil {
		o.CopiedAnnotationPrefixes = DefaultCopiedAnnotationPrefixes()
	}
	if o.CertificateRequestMinimumBackoff < 0 {
		return o, errors.New("certmanager: negative CertificateRequestMinimumBackoff")
	}
	if o.CertificateRequestMaximumBackoff == 0 {
		o.CertificateRequestMaximumBackoff = 32 * o.CertificateRequestMinimumBackoff
	}
	if o.CertificateRequestMaximumBackoff < o.CertificateRequestMinimumBackoff {
		return o, errors.New("certmanager: CertificateRequestMaximumBackoff is less than the minimum")
	}
	return o, nil
}

// stderrLogger is Options.Verbose's logger.
func stderrLogger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		ts := time.Now().Format("15:04:05.000")
		if prefix != "" {
			fmt.Fprintf(os.Stderr, "%s %s: %s\n", ts, prefix, args)
		} else {
			fmt.Fprintf(os.Stderr, "%s %s\n", ts, args)
		}
	}, funcr.Options{Verbosity: 2})
}

// waitForCacheSync waits until every informer the controllers asked for has
// listed, so that Start's caller can rely on the controllers seeing what it
// creates next, and so a missing CRD is an error instead of a silent hang.
func waitForCacheSync(ctx context.Context, base *controllerpkg.Context) error {
	ctx, cancel := context.WithTimeout(ctx, cacheSyncTimeout)
	defer cancel()
	var notSynced []string
	for typ, ok := range base.SharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			notSynced = append(notSynced, typ.String())
		}
	}
	for typ, ok := range base.KubeSharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			notSynced = append(notSynced, typ)
		}
	}
	for gvr, ok := range base.HTTP01ResourceMetadataInformersFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			notSynced = append(notSynced, gvr.String())
		}
	}
	if len(notSynced) > 0 {
		sort.Strings(notSynced)
		return fmt.Errorf("certmanager: informers did not sync (are cert-manager's CRDs installed?): %s", strings.Join(notSynced, ", "))
	}
	return nil
}

// ensureNamespace creates the cluster resource namespace, because
// ClusterIssuers fail to find their Secrets without it.
func ensureNamespace(ctx context.Context, cfg *rest.Config, name string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("certmanager: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("certmanager: creating namespace %s: %w", name, err)
	}
	return nil
}

// writeKubeconfig writes cfg's server and credentials to a private temporary
// file and returns its path. What a kubeconfig cannot hold (custom dialers,
// transport wrappers) is lost.
func writeKubeconfig(cfg *rest.Config) (string, error) {
	if cfg.WrapTransport != nil || cfg.Transport != nil || cfg.Dial != nil {
		return "", errors.New("certmanager: rest.Config with a custom transport or dialer cannot be written to a kubeconfig")
	}
	hasCA := len(cfg.CAFile) != 0 || len(cfg.CAData) != 0
	hasCert := len(cfg.CertFile) != 0 || len(cfg.CertData) != 0
	host := cfg.Host
	if host == "" {
		host = "localhost"
	}
	// The same defaulting of scheme and path that client-go applies.
	server, _, err := rest.DefaultServerURL(host, cfg.APIPath, schema.GroupVersion{}, hasCA || hasCert || cfg.Insecure)
	if err != nil {
		return "", fmt.Errorf("certmanager: API server URL: %w", err)
	}

	const name = "envtest"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   server.String(),
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
		InsecureSkipTLSVerify:    cfg.Insecure,
		TLSServerName:            cfg.ServerName,
	}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Impersonate:           cfg.Impersonate.UserName,
		ImpersonateUID:        cfg.Impersonate.UID,
		ImpersonateGroups:     cfg.Impersonate.Groups,
		ImpersonateUserExtra:  cfg.Impersonate.Extra,
		Username:              cfg.Username,
		Password:              cfg.Password,
		AuthProvider:          cfg.AuthProvider,
		Exec:                  cfg.ExecProvider,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name

	f, err := os.CreateTemp("", "cert-manager-kubeconfig-*.yaml")
	if err != nil {
		return "", fmt.Errorf("certmanager: %w", err)
	}
	path := f.Name()
	_ = f.Close()
	// WriteToFile keeps CreateTemp's 0600 mode: the file holds credentials.
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("certmanager: writing kubeconfig: %w", err)
	}
	return path, nil
}
