// Command demo shows scep-operator issuing a real certificate on one machine,
// installed the way a user installs it: a real single-node cluster
// (kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kube-proxy,
// kubelet and containerd, see test/cluster), the operator's container image
// built from this repository (`make image`'s code) and installed with the
// real helm binary as a Helm release, cert-manager's controllers, and a
// MicroMDM SCEP server with a challenge. It applies config/samples (a
// SCEPProfile in Rebuild mode with a Static challenge, and a Certificate),
// waits for the Certificate's Secret, prints the issued certificate and
// where its files are, runs a Pod that mounts the Secret and prints what the
// Pod read from its volume. Then it tears everything down (or, with -keep,
// keeps it running for kubectl).
//
// cert-manager runs inside this program from its Go module: its controller
// command is a module the Go module proxy does not serve, so no image of it
// can be built here (see test/install).
//
// On a machine that cannot run a cluster (not Linux, not root, no
// containerd), the demo says why and runs the operator in-process instead,
// with the chart's RBAC (test/stack).
//
//	go run ./hack/demo [-keep] [-out DIR] [-v]
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/install"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/node"
	"github.com/scep-operator/scep-operator/test/stack"
)

const (
	namespace = "demo"
	challenge = "demo-challenge-7f3a"
)

func main() {
	keep := flag.Bool("keep", false, "keep everything running after the certificate is issued; print a kubeconfig path; stop with Ctrl-C")
	out := flag.String("out", "", "directory for tls.crt, tls.key and ca.crt (default: a new directory under /tmp)")
	verbose := flag.Bool("v", false, "show the image build's and the in-process operator's logs")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if err := run(ctx, *keep, *out, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("\ndemo finished in %s\n", time.Since(start).Round(100*time.Millisecond))
}

// step prints a step; lines that start with spaces are details of the last one.
func step(format string, args ...any) {
	if strings.HasPrefix(format, " ") {
		fmt.Printf(format+"\n", args...)
		return
	}
	fmt.Printf("==> "+format+"\n", args...)
}

// world is what the demo needs of either way of running the operator.
type world struct {
	client     client.Client
	kubeconfig string
	kubectl    string
	// scepAddress is where the SCEP server listens so the operator reaches it.
	scepAddress string
	workDir     string
	// workload runs a Pod that mounts the Secret and returns its report
	// and a function that removes it.
	workload func(ctx context.Context, secretName string) (func(), error)
}

func run(ctx context.Context, keep bool, out string, verbose bool) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := envtest.FindRepoRoot(wd)
	if err != nil {
		return err
	}
	var w *world
	var down func()
	if reason := install.Unavailable(root); reason == nil {
		w, down, err = installed(ctx, root, verbose)
	} else {
		step("this machine cannot run a cluster (%v): running the operator in-process with the chart's RBAC instead", reason)
		w, down, err = inProcess(ctx, root, verbose)
	}
	if err != nil {
		return err
	}
	defer func() {
		step("tearing down")
		down()
	}()
	c := w.client

	step("starting the SCEP server: MicroMDM scep v2.3.0 with a challenge")
	dir, err := os.MkdirTemp(w.workDir, "micromdm-")
	if err != nil {
		return err
	}
	srv, err := micromdm.New(dir, micromdm.Options{Challenge: challenge, ListenAddress: w.scepAddress}, nil)
	if err != nil {
		return fmt.Errorf("starting MicroMDM: %w", err)
	}
	defer srv.Close()
	fmt.Printf("  %s, CA %q\n", srv.URL, srv.CA.Subject.CommonName)

	step("applying config/samples: the challenge Secret, a SCEPProfile (Rebuild, Static challenge) and a Certificate")
	samples, err := install.ReadSamples(root, namespace, srv, challenge)
	if err != nil {
		return fmt.Errorf("reading the samples: %w", err)
	}
	profile, certificate := samples.Profile, samples.Certificate
	for _, o := range []client.Object{samples.Secret, profile, certificate} {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}

	step("waiting for SCEPProfile %s/%s to be Ready", namespace, profile.Name)
	if err := wait(ctx, 60*time.Second, func() (bool, string, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(profile), profile); err != nil {
			return false, "", err
		}
		for _, cond := range profile.Status.Conditions {
			if cond.Type == "Ready" {
				return cond.Status == metav1.ConditionTrue, cond.Reason + ": " + cond.Message, nil
			}
		}
		return false, "no Ready condition yet", nil
	}); err != nil {
		return fmt.Errorf("the profile did not become Ready: %w", err)
	}
	fmt.Printf("  Ready: capabilities %s\n", strings.Join(profile.Status.Capabilities, " "))

	step("waiting for Certificate %s/%s (cert-manager makes the key and request, the operator enrolls it over SCEP)", namespace, certificate.Name)
	issueStart := time.Now()
	if err := wait(ctx, 90*time.Second, func() (bool, string, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(certificate), certificate); err != nil {
			return false, "", err
		}
		return stack.IsReady(certificate), stack.ReadyMessage(certificate), nil
	}); err != nil {
		return fmt.Errorf("the Certificate was not issued: %w", err)
	}
	fmt.Printf("  Ready in %s\n", time.Since(issueStart).Round(time.Millisecond))

	var tlsSecret corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: certificate.Spec.SecretName}, &tlsSecret); err != nil {
		return err
	}
	if out == "" {
		if out, err = os.MkdirTemp("", "scep-operator-demo-"); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		mode := os.FileMode(0o644)
		if k == "tls.key" {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(out, k), tlsSecret.Data[k], mode); err != nil {
			return err
		}
	}
	if err := describe(tlsSecret, out); err != nil {
		return err
	}
	stopWorkload, err := w.workload(ctx, tlsSecret.Name)
	if err != nil {
		return err
	}
	defer stopWorkload()

	if keep {
		step("everything keeps running; in another shell:")
		fmt.Printf("  export KUBECONFIG=%s\n", w.kubeconfig)
		fmt.Printf("  %s get pods -A\n", w.kubectl)
		fmt.Printf("  %s get scepprofiles,certificates,certificaterequests -A\n", w.kubectl)
		fmt.Println("  press Ctrl-C to stop")
		<-ctx.Done()
	}
	return nil
}

// installed starts the single-node cluster and helm-installs the operator
// from the image built here.
func installed(ctx context.Context, root string, verbose bool) (*world, func(), error) {
	opts := install.Options{
		Root:       root,
		Namespaces: []string{namespace},
		Values:     []string{"rebuild.namespaces={" + namespace + "}"},
		Images:     []node.Image{node.CertwatchImage},
		Progress:   step,
	}
	if verbose {
		opts.Log = os.Stdout
	}
	in, err := install.Up(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	pods, err := in.OperatorPods(ctx)
	if err != nil {
		in.Down()
		return nil, nil, err
	}
	for _, p := range pods {
		fmt.Printf("  operator Pod %s/%s on node %s, address %s, image %s\n", p.Namespace, p.Name, p.Spec.NodeName, p.Status.PodIP, p.Spec.Containers[0].Image)
	}
	w := &world{
		client:      in.Cluster.Env.Client,
		kubeconfig:  in.Cluster.Kubeconfig,
		kubectl:     filepath.Join(root, "bin", "kubectl"),
		scepAddress: net.JoinHostPort(in.Cluster.Gateway.String(), "0"),
		workDir:     in.Cluster.Dir,
		workload: func(ctx context.Context, secretName string) (func(), error) {
			pod := node.CertwatchPod(namespace, "certwatch", secretName, 0)
			// A scheduled Pod on the pod network, as a workload is.
			pod.Spec.NodeName, pod.Spec.HostNetwork = "", false
			return runWorkload(ctx, in.Cluster.Node, in.Cluster.Env.Client, pod, func() {})
		},
	}
	return w, in.Down, nil
}

// inProcess runs the operator in this process with the chart's RBAC, and a
// node for the workload Pod where one can run.
func inProcess(ctx context.Context, root string, verbose bool) (*world, func(), error) {
	opts := stack.Options{
		Root:           root,
		HelmValues:     []string{"rebuild.namespaces={" + namespace + "}"},
		Progress:       step,
		APIServerFlags: node.APIServerFlags,
	}
	if verbose {
		opts.OperatorLog = os.Stderr
	}
	st, err := stack.Up(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	if err := st.Env.CreateNamespace(ctx, namespace); err != nil {
		st.Down()
		return nil, nil, err
	}
	w := &world{
		client:      st.Client(),
		kubeconfig:  st.Kubeconfig,
		kubectl:     st.Tool("kubectl"),
		scepAddress: "",
		workDir:     st.WorkDir,
		workload: func(ctx context.Context, secretName string) (func(), error) {
			bin := node.BinDir(st.Root())
			if err := node.Unavailable(bin); err != nil {
				step("no workload pod on this machine: %v", err)
				return func() {}, nil
			}
			step("starting a node on this machine: containerd and kubelet (images built from test/node/images)")
			n, err := node.Start(ctx, node.Options{Root: st.Root(), Kubeconfig: st.Kubeconfig, BinDir: bin, Images: []node.Image{node.CertwatchImage}, Progress: step})
			if err != nil {
				return nil, fmt.Errorf("starting the node: %w", err)
			}
			stopNode := func() {
				if err := n.Stop(); err != nil {
					fmt.Printf("  %v\n", err)
				}
			}
			return runWorkload(ctx, n, st.Client(), node.CertwatchPod(namespace, "certwatch", secretName, 0), stopNode)
		},
	}
	return w, st.Down, nil
}

func describe(s corev1.Secret, dir string) error {
	block, _ := pem.Decode(s.Data["tls.crt"])
	if block == nil {
		return errors.New("the Secret's tls.crt holds no certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	step("issued certificate (Secret %s/%s)", s.Namespace, s.Name)
	fmt.Printf("  subject:     %s\n", leaf.Subject)
	fmt.Printf("  SANs:        %s\n", strings.Join(leaf.DNSNames, ", "))
	fmt.Printf("  issuer:      %s\n", leaf.Issuer)
	fmt.Printf("  serial:      %s\n", leaf.SerialNumber.Text(16))
	fmt.Printf("  valid:       %s to %s\n", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	fmt.Printf("  SHA-256:     %s\n", scep.FingerprintOf(leaf, crypto.SHA256).Hex())
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.Data["ca.crt"])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("tls.crt does not verify against ca.crt: %w", err)
	}
	fmt.Printf("  verifies against ca.crt: yes\n")
	fmt.Printf("  files:       %s/{tls.crt,tls.key,ca.crt}\n", dir)
	return nil
}

// wait polls cond every 200 ms until it is true, ctx ends, or timeout.
func wait(ctx context.Context, timeout time.Duration, cond func() (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if msg != last && msg != "" {
			fmt.Printf("  ... %s\n", msg)
			last = msg
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// runWorkload runs pod (it mounts the Secret) on n and prints what it read
// from its volume. The returned function deletes the pod, then calls after.
func runWorkload(ctx context.Context, n *node.Node, c client.Client, pod *corev1.Pod, after func()) (func(), error) {
	stop := func() {
		step("deleting the workload pod")
		// This pod only: on the installed cluster the operator's Pods run
		// on the node too (their ReplicaSet would recreate them).
		ctx := context.Background()
		if err := c.Delete(ctx, pod); err != nil && !apierrors.IsNotFound(err) {
			fmt.Printf("  %v\n", err)
		} else if err := wait(ctx, 90*time.Second, func() (bool, string, error) {
			err := c.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
			return apierrors.IsNotFound(err), "waiting for the pod to go", nil
		}); err != nil {
			fmt.Printf("  %v\n", err)
		}
		after()
	}
	step("running pod %s/%s: it mounts Secret %s at %s and reports what it reads", pod.Namespace, pod.Name, pod.Spec.Volumes[0].Secret.SecretName, node.CertwatchMountPath)
	start := time.Now()
	if err := c.Create(ctx, pod); err != nil {
		stop()
		return nil, err
	}
	running, err := n.WaitRunning(ctx, pod.Namespace, pod.Name, 2*time.Minute)
	if err != nil {
		fmt.Println(n.LogTail("kubelet.log", 20))
		stop()
		return nil, err
	}
	fmt.Printf("  Running on node %s %s after create\n", running.Spec.NodeName, time.Since(start).Round(time.Millisecond))
	var logs string
	if err := wait(ctx, 60*time.Second, func() (bool, string, error) {
		logs, err = n.Logs(ctx, pod.Namespace, pod.Name)
		if err != nil {
			return false, err.Error(), nil
		}
		reports, err := node.ParseReports(logs)
		return err == nil && len(reports) > 0, "waiting for the pod's report", nil
	}); err != nil {
		stop()
		return nil, fmt.Errorf("the pod did not report: %w", err)
	}
	step("what the pod read from its volume (kubectl logs -n %s %s)", pod.Namespace, pod.Name)
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		fmt.Printf("  %s\n", line)
	}
	return stop, nil
}
