// Package trustmanager runs trust-manager's real Bundle controller
// in-process against any API server (typically envtest), so that the
// operator's CA distribution is tested with what reads it in a cluster:
// a Bundle that sources the operator's CA bundle ConfigMaps by label and
// writes target ConfigMaps into namespaces.
//
// trust-manager's binary (cmd/trust-manager) is in the same module as its
// controller, which it sets up with pkg/bundle.SetupWithManager on a
// controller-runtime manager whose cache is pkg/bundle.CacheOpts. This
// package does the same, minus leader election, metrics, health probes and
// the validating webhook (nothing validates Bundles on admission here, as
// with test/certmanager and cert-manager's webhook).
package trustmanager

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	trustapi "github.com/cert-manager/trust-manager/pkg/apis/trust/v1alpha1"
	"github.com/cert-manager/trust-manager/pkg/bundle"
	"github.com/cert-manager/trust-manager/pkg/bundle/controller"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// DefaultTrustNamespace is trust-manager's default --trust-namespace.
const DefaultTrustNamespace = "cert-manager"

// cacheSyncTimeout bounds how long Start waits for the informers to list;
// they fail to only when something is structurally wrong (trust-manager's
// CRDs are not installed).
const cacheSyncTimeout = time.Minute

// CRDs returns the directory of trust-manager's CRDs (Bundle and
// ClusterBundle) in the module cache, for envtest.Options.CRDPaths.
func CRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/trust-manager").Output()
	if err != nil {
		return "", fmt.Errorf("finding trust-manager's module (go list -m): %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds"), nil
}

// Options configure Start. The zero value is usable.
type Options struct {
	// TrustNamespace is where Bundles read their sources; Start creates it
	// if it is missing. Empty means DefaultTrustNamespace.
	TrustNamespace string
	// FilterExpiredCerts drops expired certificates from targets, as
	// trust-manager's --filter-expired-certificates does.
	FilterExpiredCerts bool
	// Logger receives trust-manager's logs; the zero value discards them.
	Logger logr.Logger
}

// Start runs trust-manager's Bundle controller against cfg until ctx ends or
// stop is called; stop waits for it to return. It returns once the
// controller's caches are filled, so Bundles created afterwards are seen.
func Start(ctx context.Context, cfg *rest.Config, opts Options) (stop func(), err error) {
	if cfg == nil {
		return nil, errors.New("trustmanager: nil rest.Config")
	}
	if opts.TrustNamespace == "" {
		opts.TrustNamespace = DefaultTrustNamespace
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, trustapi.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	if err := ensureNamespace(ctx, cfg, scheme, opts.TrustNamespace); err != nil {
		return nil, err
	}
	bundleOpts := controller.Options{Namespace: opts.TrustNamespace, FilterExpiredCerts: opts.FilterExpiredCerts}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Several tests of a process may each run trust-manager.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		Cache:      bundle.CacheOpts(bundleOpts),
	})
	if err != nil {
		return nil, fmt.Errorf("trustmanager: creating the manager: %w", err)
	}
	runCtx, cancel := context.WithCancel(logf.IntoContext(ctx, log.WithName("trust-manager")))
	if err := bundle.SetupWithManager(runCtx, mgr, bundleOpts); err != nil {
		cancel()
		return nil, fmt.Errorf("trustmanager: setting up the Bundle controller: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(runCtx) }()
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			log.Error(err, "trust-manager stopped")
		}
	}
	syncCtx, syncCancel := context.WithTimeout(runCtx, cacheSyncTimeout)
	defer syncCancel()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		stop()
		return nil, errors.New("trustmanager: the caches did not sync within a minute: are trust-manager's CRDs installed (CRDs)?")
	}
	return stop, nil
}

func ensureNamespace(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, name string) error {
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{}
	ns.Name = name
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("trustmanager: creating the trust namespace %s: %w", name, err)
	}
	return nil
}
