// Package envtest starts a real kube-apiserver and etcd (built by
// hack/envtest-binaries.sh into bin/) with the operator's CRDs and
// cert-manager's, for controller tests.
package envtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
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

// FindRepoRoot walks up from dir to the directory holding this module's go.mod.
func FindRepoRoot(dir string) (string, error) {
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/scep-operator/scep-operator\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the scep-operator module")
		}
		dir = parent
	}
}

// RootOr returns root, or when it is empty the repository root found from
// the working directory (for the Root options of the test harnesses).
func RootOr(root string) (string, error) {
	if root != "" {
		return root, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return FindRepoRoot(wd)
}

// RepoRoot is FindRepoRoot from the working directory, failing t.
func RepoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := FindRepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// FindCertManagerCRDs is the directory of cert-manager's CRDs in the module cache.
func FindCertManagerCRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		return "", fmt.Errorf("locating cert-manager's module: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds"), nil
}

// CertManagerCRDs is FindCertManagerCRDs, failing t.
func CertManagerCRDs(t testing.TB) string {
	t.Helper()
	dir, err := FindCertManagerCRDs()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Options configure New.
type Options struct {
	// Root is the repository root; empty means found from the working directory.
	Root string
	// CRDPaths are files or directories of CRDs to install; nil means
	// config/crd/bases and cert-manager's CRDs.
	CRDPaths []string
	// APIServerFlags are set on kube-apiserver in addition to envtest's.
	APIServerFlags map[string]string
	// Configure, when set, changes the environment before it starts (for
	// example the API server's address and certificates, see test/cluster).
	Configure func(*ctrlenvtest.Environment)
}

// New starts kube-apiserver and etcd. The binaries come from
// KUBEBUILDER_ASSETS or <root>/bin. Stop the result with Environment.Stop.
func New(opts Options) (*Env, error) {
	root := opts.Root
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		if root, err = FindRepoRoot(wd); err != nil {
			return nil, err
		}
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make envtest` (hack/envtest-binaries.sh)", b, assets)
		}
	}
	crds := opts.CRDPaths
	if crds == nil {
		cm, err := FindCertManagerCRDs()
		if err != nil {
			return nil, err
		}
		crds = []string{filepath.Join(root, "config", "crd", "bases"), cm}
	}
	env := &ctrlenvtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     crds,
		ErrorIfCRDPathMissing: true,
	}
	if len(opts.APIServerFlags) > 0 {
		args := env.ControlPlane.GetAPIServer().Configure()
		for k, v := range opts.APIServerFlags {
			args.Set(k, v)
		}
	}
	if opts.Configure != nil {
		opts.Configure(env)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	scheme := NewScheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, Environment: env}, nil
}

// Start runs kube-apiserver and etcd with the CRDs of config/crd/bases and
// cert-manager, and stops them when the test ends. A missing binary fails
// the test with the command that builds it.
func Start(t testing.TB) *Env {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, stopAtCleanup bool) *Env {
	t.Helper()
	e, err := New(Options{Root: RepoRoot(t)})
	if err != nil {
		t.Fatalf("envtest: %v", err)
	}
	if stopAtCleanup {
		t.Cleanup(func() {
			if err := e.Environment.Stop(); err != nil {
				t.Logf("envtest: stop: %v", err)
			}
		})
	}
	return e
}

// Namespace creates a namespace for one test.
func (e *Env) Namespace(t testing.TB, name string) string {
	t.Helper()
	if err := e.CreateNamespace(context.Background(), name); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

// CreateNamespace creates a namespace; one that exists already is fine.
func (e *Env) CreateNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{}
	ns.Name = name
	if err := e.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// StartShared is Start for an API server shared by a package's tests: it is
// not stopped when t ends; the caller stops Environment (e.g. in TestMain).
func StartShared(t testing.TB) *Env {
	t.Helper()
	return start(t, false)
}

// WriteKubeconfig writes an admin kubeconfig for cfg (client certificates
// inline) to path, for tools and processes started beside the tests:
// kubectl, cmd/manager, the benches.
func WriteKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}
