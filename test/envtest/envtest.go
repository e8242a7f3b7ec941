// Package envtest starts a real kube-apiserver and etcd (built by
// hack/envtest-binaries.sh into bin/) with the operator's CRDs and
// cert-manager's, for controller tests.
package envtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// Env is a running API server with a client.
type Env struct {
	// Config reaches the API server as an admin.
	Config *rest.Config
	// Client is an uncached client with the operator's scheme.
	Client client.Client
	// Scheme knows core, cert-manager and scep.certificates.dev types.
	Scheme *runtime.Scheme
	// Environment is the underlying controller-runtime envtest.
	Environment *ctrlenvtest.Environment
}

// NewScheme returns a scheme with every type the operator uses.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme, scepv1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// RepoRoot walks up from the working directory to the directory holding
// this module's go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/scep-operator/scep-operator\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("envtest: not inside the scep-operator module")
		}
		dir = parent
	}
}

// CertManagerCRDs is the directory of cert-manager's CRDs in the module cache.
func CertManagerCRDs(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		t.Fatalf("envtest: locating cert-manager's module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
}

// Start runs kube-apiserver and etcd with the CRDs of config/crd/bases and
// cert-manager, and stops them when the test ends. The binaries come from
// KUBEBUILDER_ASSETS or <repo>/bin; a missing binary fails the test with
// the command that builds it.
func Start(t testing.TB) *Env {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, stopAtCleanup bool) *Env {
	t.Helper()
	root := RepoRoot(t)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			t.Fatalf("envtest: %s not found in %s: run `make envtest` (hack/envtest-binaries.sh)", b, assets)
		}
	}
	env := &ctrlenvtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths: []string{
			filepath.Join(root, "config", "crd", "bases"),
			CertManagerCRDs(t),
		},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("envtest: starting kube-apiserver and etcd: %v", err)
	}
	if stopAtCleanup {
		t.Cleanup(func() {
			if err := env.Stop(); err != nil {
				t.Logf("envtest: stop: %v", err)
			}
		})
	}
	scheme := NewScheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, Environment: env}
}

// Namespace creates a namespace for one test.
func (e *Env) Namespace(t testing.TB, name string) string {
	t.Helper()
	ns := &corev1.Namespace{}
	ns.Name = name
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

// StartShared is Start for an API server shared by a package's tests: it is
// not stopped when t ends; the caller stops Environment (e.g. in TestMain).
func StartShared(t testing.TB) *Env {
	t.Helper()
	return start(t, false)
}
