// Package stack assembles the whole product on one machine, for the demo and
// the end-to-end test: a real kube-apiserver and etcd, the Helm chart
// rendered and applied, cert-manager's real controllers, a real SCEP server
// (MicroMDM, in-process) and scep-operator running in-process with exactly
// the chart's permissions (it impersonates the chart's ServiceAccount).
package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	ctrlenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/test/certmanager"
	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/micromdm"
)

// Options configure Up.
type Options struct {
	// Root is the repository root; empty means found from the working directory.
	Root string
	// WorkDir holds the kubeconfig and the SCEP server's depot; empty means a
	// new temporary directory.
	WorkDir string
	// ReleaseNamespace is where the chart is installed ("scep-operator").
	ReleaseNamespace string
	// Release is the Helm release name ("scep-operator").
	Release string
	// HelmValues are passed to helm template with --set (e.g.
	// "rebuild.namespaces={demo}").
	HelmValues []string
	// Progress, when set, receives a line for each step.
	Progress func(format string, args ...any)
	// OperatorLog receives the operator's logs; nil discards them.
	OperatorLog io.Writer
	// Verbose makes cert-manager's controllers log.
	Verbose bool
	// NoOperator leaves the operator out: the test runs it itself (for
	// example as processes from StartManagerProcess).
	NoOperator bool
	// APIServerFlags are set on kube-apiserver (e.g. node.APIServerFlags,
	// so that it reaches a kubelet on this machine).
	APIServerFlags map[string]string
	// Configure, when set, changes the API server's environment before it
	// starts (envtest.Options.Configure), e.g. fixed directories so that
	// kube-apiserver and etcd can be stopped and started again.
	Configure func(*ctrlenvtest.Environment)
	// OperatorOptions, when set, changes the in-process operator's options
	// after the chart's are filled in (e.g. what a manager flag the chart
	// does not set would change).
	OperatorOptions func(*controllers.Options)
	// ExtraCRDPaths are more CRD files or directories to install (e.g.
	// approver-policy's), beside cert-manager's and the chart's.
	ExtraCRDPaths []string
	// CertManagerControllers are cert-manager's controllers to run; nil
	// means certmanager.DefaultControllers() (with its approver).
	CertManagerControllers []string
}

// Stack is the running product. Down stops everything.
type Stack struct {
	// Env is the API server.
	Env *envtest.Env
	// Kubeconfig is a file with admin credentials for the API server.
	Kubeconfig string
	// WorkDir holds the kubeconfig and depots.
	WorkDir string
	// Rendered are the chart's objects, as applied.
	Rendered []*unstructured.Unstructured
	// ServiceAccount is the operator's identity (system:serviceaccount:ns:name).
	ServiceAccount string
	// OperatorConfig reaches the API server as the operator's ServiceAccount.
	OperatorConfig *rest.Config

	opts  Options
	root  string
	stops []func()
}

func (s *Stack) progress(format string, args ...any) {
	if s.opts.Progress != nil {
		s.opts.Progress(format, args...)
	}
}

// Up starts the stack. On error, whatever was started is stopped.
func Up(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.ReleaseNamespace == "" {
		opts.ReleaseNamespace = "scep-operator"
	}
	if opts.Release == "" {
		opts.Release = "scep-operator"
	}
	s := &Stack{opts: opts}
	defer func() {
		if err != nil {
			s.Down()
		}
	}()
	if s.root = opts.Root; s.root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		if s.root, err = envtest.FindRepoRoot(wd); err != nil {
			return nil, err
		}
	}
	if s.WorkDir = opts.WorkDir; s.WorkDir == "" {
		if s.WorkDir, err = os.MkdirTemp("", "scep-operator-stack-"); err != nil {
			return nil, err
		}
		s.stops = append(s.stops, func() { _ = os.RemoveAll(s.WorkDir) })
	}

	step := time.Now()
	s.progress("rendering the Helm chart charts/scep-operator")
	if s.Rendered, err = s.renderChart(ctx); err != nil {
		return nil, fmt.Errorf("rendering the Helm chart: %w", err)
	}
	s.progress("  %d objects (%s)", len(s.Rendered), time.Since(step).Round(time.Millisecond))

	step = time.Now()
	s.progress("starting kube-apiserver and etcd (envtest)")
	cmCRDs, err := envtest.FindCertManagerCRDs()
	if err != nil {
		return nil, err
	}
	if s.Env, err = envtest.New(envtest.Options{Root: s.root, CRDPaths: append([]string{cmCRDs}, opts.ExtraCRDPaths...), APIServerFlags: opts.APIServerFlags, Configure: opts.Configure}); err != nil {
		return nil, fmt.Errorf("starting the API server: %w", err)
	}
	s.stops = append(s.stops, func() { _ = s.Env.Environment.Stop() })
	s.Kubeconfig = filepath.Join(s.WorkDir, "kubeconfig")
	if err = envtest.WriteKubeconfig(s.Env.Config, s.Kubeconfig); err != nil {
		return nil, err
	}
	s.progress("  API server at %s (%s)", s.Env.Config.Host, time.Since(step).Round(time.Millisecond))

	step = time.Now()
	s.progress("installing the chart's CRDs and objects into namespace %s", opts.ReleaseNamespace)
	if err := s.apply(ctx); err != nil {
		return nil, fmt.Errorf("applying the chart: %w", err)
	}
	s.progress("  done (%s)", time.Since(step).Round(time.Millisecond))

	step = time.Now()
	s.progress("starting cert-manager's controllers (from cert-manager's pkg/controller)")
	// A minute's backoff after a failed request, as a cluster would have
	// (cert-manager's default is an hour); none would loop on a refusal.
	stopCM, err := certmanager.Start(ctx, s.Env.Config, certmanager.Options{Verbose: opts.Verbose, CertificateRequestMinimumBackoff: time.Minute, Controllers: opts.CertManagerControllers})
	if err != nil {
		return nil, fmt.Errorf("starting cert-manager: %w", err)
	}
	s.stops = append(s.stops, stopCM)
	s.progress("  running (%s)", time.Since(step).Round(time.Millisecond))

	if opts.NoOperator {
		return s, nil
	}
	step = time.Now()
	s.progress("starting scep-operator as %s (the chart's RBAC)", s.ServiceAccount)
	if err := s.startOperator(ctx); err != nil {
		return nil, fmt.Errorf("starting scep-operator: %w", err)
	}
	s.progress("  running (%s)", time.Since(step).Round(time.Millisecond))
	return s, nil
}

// Down stops everything Up started, newest first.
func (s *Stack) Down() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

// Client is an admin client of the API server.
func (s *Stack) Client() client.Client { return s.Env.Client }

// StartSCEPServer starts an in-process MicroMDM SCEP server (a challenge
// makes it check challengePassword); it stops with the stack.
func (s *Stack) StartSCEPServer(name string, opts micromdm.Options) (*micromdm.Server, error) {
	dir := filepath.Join(s.WorkDir, "scep-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	srv, err := micromdm.New(dir, opts, nil)
	if err != nil {
		return nil, err
	}
	s.stops = append(s.stops, srv.Close)
	return srv, nil
}

// Root is the repository root.
func (s *Stack) Root() string { return s.root }

// Tool returns the path of a binary built into bin/ (helm, kubectl).
func (s *Stack) Tool(name string) string { return filepath.Join(s.root, "bin", name) }

func (s *Stack) renderChart(ctx context.Context) ([]*unstructured.Unstructured, error) {
	return RenderChart(ctx, s.root, s.opts.Release, s.opts.ReleaseNamespace, s.opts.HelmValues...)
}

// RenderChart renders charts/scep-operator of the repository at root with
// helm template ($HELM_BIN, else root/bin/helm), CRDs included, each value
// passed with --set.
func RenderChart(ctx context.Context, root, release, namespace string, values ...string) ([]*unstructured.Unstructured, error) {
	helm := os.Getenv("HELM_BIN")
	if helm == "" {
		helm = filepath.Join(root, "bin", "helm")
	}
	if _, err := os.Stat(helm); err != nil {
		return nil, fmt.Errorf("%s not found: run `make helm`", helm)
	}
	args := []string{"template", release, filepath.Join(root, "charts", "scep-operator"), "--namespace", namespace, "--include-crds"}
	for _, v := range values {
		args = append(args, "--set", v)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template: %v: %s", err, stderr.String())
	}
	return DecodeYAML(out)
}

// DecodeYAML splits a multi-document YAML stream into objects, skipping
// empty documents.
func DecodeYAML(b []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(obj) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
}

// apply installs the chart's CRDs (waiting until they are served), creates
// the namespaces it needs, then creates every other object.
func (s *Stack) apply(ctx context.Context) error {
	c := s.Env.Client
	var crds []*apiextensionsv1.CustomResourceDefinition
	var rest []*unstructured.Unstructured
	for _, o := range s.Rendered {
		if o.GetAnnotations()["helm.sh/hook"] == "test" {
			continue // created by `helm test` only, never by an install
		}
		if o.GetKind() == "CustomResourceDefinition" {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, crd); err != nil {
				return err
			}
			crds = append(crds, crd)
			continue
		}
		rest = append(rest, o)
	}
	if len(crds) == 0 {
		return errors.New("the chart rendered no CRDs")
	}
	if _, err := ctrlenvtest.InstallCRDs(s.Env.Config, ctrlenvtest.CRDInstallOptions{CRDs: crds}); err != nil {
		return fmt.Errorf("installing the CRDs: %w", err)
	}
	namespaces := map[string]bool{s.opts.ReleaseNamespace: true, "cert-manager": true}
	for _, o := range rest {
		if ns := o.GetNamespace(); ns != "" {
			namespaces[ns] = true
		}
	}
	for ns := range namespaces {
		if err := s.Env.CreateNamespace(ctx, ns); err != nil {
			return err
		}
	}
	for _, o := range rest {
		if o.GetKind() == "ServiceAccount" {
			s.ServiceAccount = "system:serviceaccount:" + o.GetNamespace() + ":" + o.GetName()
		}
		if o.GetNamespace() == "" && isNamespaced(o.GetKind()) {
			o.SetNamespace(s.opts.ReleaseNamespace)
		}
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	if s.ServiceAccount == "" {
		return errors.New("the chart rendered no ServiceAccount")
	}
	return nil
}

func isNamespaced(kind string) bool {
	switch kind {
	case "ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition":
		return false
	}
	return true
}

// startOperator runs the manager in-process as the chart's ServiceAccount,
// with the flags the chart's Deployment passes.
func (s *Stack) startOperator(ctx context.Context) error {
	s.OperatorConfig = rest.CopyConfig(s.Env.Config)
	s.OperatorConfig.Impersonate = rest.ImpersonationConfig{UserName: s.ServiceAccount, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + s.opts.ReleaseNamespace, "system:authenticated"}}
	logOut := s.opts.OperatorLog
	if logOut == nil {
		logOut = io.Discard
	}
	ctrllog.SetLogger(zap.New(zap.WriteTo(logOut)))
	mgr, err := ctrl.NewManager(s.OperatorConfig, ctrl.Options{
		Scheme:                 s.Env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Logger:                 zap.New(zap.WriteTo(logOut)),
		Client:                 controllers.ClientOptions(),
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(ctx)
	opts := controllers.Options{
		ClusterResourceNamespace: s.opts.ReleaseNamespace,
		CheckInterval:            time.Minute,
		ClusterDomain:            "cluster.local",
		MaxRetryDuration:         10 * time.Minute,
		Logger:                   mgr.GetLogger(),
	}
	if s.opts.OperatorOptions != nil {
		s.opts.OperatorOptions(&opts)
	}
	if _, err := controllers.Setup(mctx, mgr, opts); err != nil {
		cancel()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	s.stops = append(s.stops, func() {
		cancel()
		if err := <-done; err != nil {
			s.progress("  the operator stopped with: %v", err)
		}
	})
	return nil
}

// IsReady reports whether a Certificate's Ready condition is True.
func IsReady(crt *cmapi.Certificate) bool {
	for _, c := range crt.Status.Conditions {
		if c.Type == cmapi.CertificateConditionReady {
			return c.Status == "True"
		}
	}
	return false
}

// ReadyMessage is the message of a Certificate's Ready condition.
func ReadyMessage(crt *cmapi.Certificate) string {
	for _, c := range crt.Status.Conditions {
		if c.Type == cmapi.CertificateConditionReady {
			return strings.TrimSpace(string(c.Status) + " " + c.Reason + ": " + c.Message)
		}
	}
	return "no Ready condition"
}
