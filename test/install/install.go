// Package install installs scep-operator the way a cluster admin does, for
// the install test and the demo: on a real single-node cluster
// (test/cluster), from the container image `make image` builds (imported,
// never pulled), with the real helm binary and a real release of
// charts/scep-operator. The operator then runs as the chart's Deployment,
// with its own ServiceAccount token, probes, security context and
// arguments.
//
// cert-manager runs in the test process from its Go module (test/certmanager):
// its controller command is a separate module the Go module proxy does not
// serve, so no cert-manager image can be built here.
package install

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scep-operator/scep-operator/test/certmanager"
	"github.com/scep-operator/scep-operator/test/cluster"
	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/node"
)

// Defaults of Options.
const (
	DefaultRelease   = "scep-operator"
	DefaultNamespace = "scep-operator"
)

// Options configure Up.
type Options struct {
	// Root is the repository root; empty means found from the working directory.
	Root string
	// Release and Namespace name the Helm release (DefaultRelease,
	// DefaultNamespace).
	Release, Namespace string
	// Values are helm --set values besides the image's.
	Values []string
	// Namespaces are created before the install (those the values name,
	// such as rebuild.namespaces, must exist).
	Namespaces []string
	// Images are more images for the node (workloads).
	Images []node.Image
	// Progress, when set, receives a line for each step.
	Progress func(format string, args ...any)
	// Log receives the image build's lines (nil: none).
	Log io.Writer
}

// Install is scep-operator installed on a running cluster.
type Install struct {
	// Cluster is the cluster.
	Cluster *cluster.Cluster
	// Helm runs helm against it.
	Helm Helm
	// Chart is the chart's directory.
	Chart string
	// Release and Namespace name the release.
	Release, Namespace string
	// ImageValues are the --set values that select the imported image.
	ImageValues []string

	opts  Options
	stops []func()
}

func (in *Install) progress(format string, args ...any) {
	if in.opts.Progress != nil {
		in.opts.Progress(format, args...)
	}
}

// Unavailable says why this machine cannot install (nil when it can).
func Unavailable(root string) error {
	if err := cluster.Unavailable(node.BinDir(root)); err != nil {
		return err
	}
	if _, err := os.Stat(helmBin(root)); err != nil {
		return fmt.Errorf("%s not found: run `make helm`", helmBin(root))
	}
	return nil
}

func helmBin(root string) string {
	if b := os.Getenv("HELM_BIN"); b != "" {
		return b
	}
	return filepath.Join(root, "bin", "helm")
}

// Up builds the image, starts the cluster with it imported, starts
// cert-manager's controllers, and `helm install`s the chart, waiting until
// the Deployment is Available (its readiness probe passed). On error
// whatever was started is stopped.
func Up(ctx context.Context, opts Options) (_ *Install, err error) {
	if opts.Root, err = envtest.RootOr(opts.Root); err != nil {
		return nil, err
	}
	if opts.Release == "" {
		opts.Release = DefaultRelease
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	in := &Install{
		opts:        opts,
		Chart:       filepath.Join(opts.Root, "charts", "scep-operator"),
		Release:     opts.Release,
		Namespace:   opts.Namespace,
		ImageValues: []string{"image.repository=" + ImageRepository, "image.tag=" + ImageTag, "image.pullPolicy=Never"},
	}
	defer func() {
		if err != nil {
			in.Down()
		}
	}()
	dir, err := os.MkdirTemp("", "scep-operator-install-")
	if err != nil {
		return nil, err
	}
	in.stops = append(in.stops, func() { _ = os.RemoveAll(dir) })

	step := time.Now()
	in.progress("building the operator's image (internal/imagebuild, as `make image` does; linux/%s only)", goarch())
	tarball, err := BuildImage(ctx, opts.Root, filepath.Join(dir, "image"), opts.Log)
	if err != nil {
		return nil, err
	}
	in.progress("  %s:%s (%s)", ImageRepository, ImageTag, time.Since(step).Round(time.Millisecond))

	step = time.Now()
	in.progress("starting a single-node cluster (kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kube-proxy, kubelet, containerd)")
	cmCRDs, err := envtest.FindCertManagerCRDs()
	if err != nil {
		return nil, err
	}
	if in.Cluster, err = cluster.Start(ctx, cluster.Options{
		Root:     opts.Root,
		CRDPaths: []string{cmCRDs},
		Images:   opts.Images,
		Tarballs: []string{tarball},
		Progress: opts.Progress,
	}); err != nil {
		return nil, err
	}
	in.stops = append(in.stops, in.Cluster.Stop)
	in.Helm = Helm{Bin: helmBin(opts.Root), Kubeconfig: in.Cluster.Kubeconfig}
	in.progress("  ready (%s)", time.Since(step).Round(time.Millisecond))

	step = time.Now()
	in.progress("starting cert-manager's controllers (in this process: see package install)")
	stopCM, err := certmanager.Start(ctx, in.Cluster.Env.Config, certmanager.Options{CertificateRequestMinimumBackoff: time.Minute})
	if err != nil {
		return nil, fmt.Errorf("starting cert-manager: %w", err)
	}
	in.stops = append(in.stops, stopCM)
	in.progress("  running (%s)", time.Since(step).Round(time.Millisecond))

	for _, ns := range opts.Namespaces {
		if err := in.Cluster.Env.CreateNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	step = time.Now()
	in.progress("helm install %s %s --namespace %s --create-namespace --wait", opts.Release, "charts/scep-operator", opts.Namespace)
	args := append([]string{"install", opts.Release, in.Chart, "--namespace", opts.Namespace, "--create-namespace", "--wait", "--timeout", "5m"}, SetFlags(append(in.ImageValues, opts.Values...))...)
	if _, err := in.Helm.Run(ctx, args...); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, in.Diagnose(ctx))
	}
	in.stops = append(in.stops, func() {
		// Pods first, while the node runs; the CRDs stay, as helm keeps them.
		_, _ = in.Helm.Run(context.Background(), "uninstall", opts.Release, "--namespace", opts.Namespace, "--wait", "--timeout", "2m")
	})
	in.progress("  Deployment Available (%s)", time.Since(step).Round(time.Millisecond))
	return in, nil
}

// Down uninstalls the release and stops everything Up started, newest first.
func (in *Install) Down() {
	for i := len(in.stops) - 1; i >= 0; i-- {
		in.stops[i]()
	}
	in.stops = nil
}

// Deployment is the operator's Deployment.
func (in *Install) Deployment(ctx context.Context) (*appsv1.Deployment, error) {
	return in.Cluster.Node.Clientset.AppsV1().Deployments(in.Namespace).Get(ctx, in.Release, metav1.GetOptions{})
}

// OperatorPods are the Deployment's Pods that are not being deleted.
func (in *Install) OperatorPods(ctx context.Context) ([]corev1.Pod, error) {
	list, err := in.Cluster.Node.Clientset.CoreV1().Pods(in.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/name=scep-operator,app.kubernetes.io/instance=" + in.Release,
	})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// Diagnose is what an admin would look at when the install does not come
// up: the operator Pods' states and logs, and the kubelet's last lines.
func (in *Install) Diagnose(ctx context.Context) string {
	if in.Cluster == nil {
		return ""
	}
	out := ""
	pods, err := in.OperatorPods(ctx)
	if err != nil {
		return "listing the operator's pods: " + err.Error()
	}
	for _, p := range pods {
		out += fmt.Sprintf("pod %s: phase %s", p.Name, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			out += fmt.Sprintf(", %s ready=%v restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
			if w := cs.State.Waiting; w != nil {
				out += " waiting " + w.Reason + ": " + w.Message
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				out += fmt.Sprintf(" last exit %d %s: %s", t.ExitCode, t.Reason, t.Message)
			}
		}
		out += "\n"
		if logs, err := in.Cluster.Node.Logs(ctx, p.Namespace, p.Name); err == nil {
			out += "--- logs of " + p.Name + " ---\n" + tail(logs, 30) + "\n"
		}
	}
	return out + in.Cluster.LogTail("kubelet", 15)
}
