// Command demo shows scep-operator issuing a real certificate on one machine:
// a real kube-apiserver and etcd, cert-manager's controllers, a MicroMDM SCEP
// server with a challenge, and the operator with the Helm chart's RBAC. It
// applies the samples (a SCEPProfile in Rebuild mode with a Static challenge,
// and a Certificate), waits for the Certificate's Secret, prints the issued
// certificate and where its files are, and, where this machine can run a
// node (containerd and kubelet, see test/node), runs a pod that mounts the
// Secret and prints what the pod read from its volume. Then it tears
// everything down (or, with -keep, keeps it running for kubectl).
//
//	go run ./hack/demo [-keep] [-out DIR]
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/node"
	"github.com/scep-operator/scep-operator/test/stack"
)

const (
	namespace = "demo"
	challenge = "demo-challenge-7f3a"
)

func main() {
	keep := flag.Bool("keep", false, "keep the stack running after the certificate is issued; print a kubeconfig path; stop with Ctrl-C")
	out := flag.String("out", "", "directory for tls.crt, tls.key and ca.crt (default: a new directory under /tmp)")
	verbose := flag.Bool("v", false, "show the operator's logs")
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

func run(ctx context.Context, keep bool, out string, verbose bool) error {
	opts := stack.Options{
		HelmValues:     []string{"rebuild.namespaces={" + namespace + "}"},
		Progress:       step,
		APIServerFlags: node.APIServerFlags,
	}
	if verbose {
		opts.OperatorLog = os.Stderr
	}
	st, err := stack.Up(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		step("tearing down")
		st.Down()
	}()
	c := st.Client()

	step("starting the SCEP server: MicroMDM scep v2.3.0 with a challenge")
	srv, err := st.StartSCEPServer("micromdm", micromdm.Options{Challenge: challenge})
	if err != nil {
		return fmt.Errorf("starting MicroMDM: %w", err)
	}
	fmt.Printf("  %s, CA %q\n", srv.URL, srv.CA.Subject.CommonName)

	step("applying config/samples: the challenge Secret, a SCEPProfile (Rebuild, Static challenge) and a Certificate")
	if err := st.Env.CreateNamespace(ctx, namespace); err != nil {
		return err
	}
	profile, secret, certificate, err := samples(st.Root(), srv)
	if err != nil {
		return fmt.Errorf("reading the samples: %w", err)
	}
	for _, o := range []client.Object{secret, profile, certificate} {
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
	stopNode, err := runWorkload(ctx, st, tlsSecret.Name)
	if err != nil {
		return err
	}
	defer stopNode()

	if keep {
		step("the stack keeps running; in another shell:")
		fmt.Printf("  export KUBECONFIG=%s\n", st.Kubeconfig)
		fmt.Printf("  %s get scepprofiles,certificates,certificaterequests -A\n", st.Tool("kubectl"))
		fmt.Println("  press Ctrl-C to stop")
		<-ctx.Done()
	}
	return nil
}

// samples reads config/samples and points them at the demo's SCEP server.
func samples(root string, srv *micromdm.Server) (*scepv1alpha1.SCEPProfile, *corev1.Secret, *cmapi.Certificate, error) {
	docs, err := os.ReadFile(filepath.Join(root, "config", "samples", "scep_v1alpha1_scepprofile.yaml"))
	if err != nil {
		return nil, nil, nil, err
	}
	objs, err := stack.DecodeYAML(docs)
	if err != nil {
		return nil, nil, nil, err
	}
	profile, secret := &scepv1alpha1.SCEPProfile{}, &corev1.Secret{}
	for _, o := range objs {
		b, _ := yaml.Marshal(o.Object)
		switch o.GetKind() {
		case "SCEPProfile":
			err = yaml.Unmarshal(b, profile)
		case "Secret":
			err = yaml.Unmarshal(b, secret)
		}
		if err != nil {
			return nil, nil, nil, err
		}
	}
	crtYAML, err := os.ReadFile(filepath.Join(root, "config", "samples", "certificate.yaml"))
	if err != nil {
		return nil, nil, nil, err
	}
	certificate := &cmapi.Certificate{}
	if err := yaml.Unmarshal(crtYAML, certificate); err != nil {
		return nil, nil, nil, err
	}
	if profile.Name == "" || secret.Name == "" || certificate.Name == "" {
		return nil, nil, nil, errors.New("config/samples lack the profile, Secret or Certificate")
	}
	// The samples name a cluster's servers; here they run on this machine.
	profile.Namespace, secret.Namespace, certificate.Namespace = namespace, namespace, namespace
	profile.Spec.URL = srv.URL
	profile.Spec.CAFingerprint = "sha256:" + scep.FingerprintOf(srv.CA, crypto.SHA256).Hex()
	secret.StringData = map[string]string{"password": challenge}
	certificate.Spec.CommonName = certificate.Name + "." + namespace
	certificate.Spec.DNSNames = []string{certificate.Name + "." + namespace + ".svc.cluster.local"}
	return profile, secret, certificate, nil
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

// runWorkload starts a node and a pod that mounts secretName, and prints
// what the pod read from its volume. On a machine that cannot run a node it
// says why and does nothing. The returned function deletes the pod and stops
// the node.
func runWorkload(ctx context.Context, st *stack.Stack, secretName string) (func(), error) {
	bin := node.BinDir(st.Root())
	if err := node.Unavailable(bin); err != nil {
		step("no workload pod on this machine: %v", err)
		return func() {}, nil
	}
	step("starting a node on this machine: containerd and kubelet (images built from test/node/images)")
	start := time.Now()
	n, err := node.Start(ctx, node.Options{Root: st.Root(), Kubeconfig: st.Kubeconfig, BinDir: bin, Images: []node.Image{node.CertwatchImage}, Progress: step})
	if err != nil {
		return nil, fmt.Errorf("starting the node: %w", err)
	}
	stop := func() {
		step("deleting the pod and stopping the node")
		if err := n.DeletePods(context.Background(), 90*time.Second); err != nil {
			fmt.Printf("  %v\n", err)
		}
		if err := n.Stop(); err != nil {
			fmt.Printf("  %v\n", err)
		}
	}
	fmt.Printf("  node %q ready in %s\n", node.Name, time.Since(start).Round(time.Millisecond))

	pod := node.CertwatchPod(namespace, "certwatch", secretName, 0)
	step("running pod %s/%s: it mounts Secret %s at %s and reports what it reads", namespace, pod.Name, secretName, node.CertwatchMountPath)
	start = time.Now()
	if err := st.Client().Create(ctx, pod); err != nil {
		stop()
		return nil, err
	}
	if _, err := n.WaitRunning(ctx, namespace, pod.Name, 2*time.Minute); err != nil {
		fmt.Println(n.LogTail("kubelet.log", 20))
		stop()
		return nil, err
	}
	fmt.Printf("  Running %s after create\n", time.Since(start).Round(time.Millisecond))
	var logs string
	if err := wait(ctx, 60*time.Second, func() (bool, string, error) {
		logs, err = n.Logs(ctx, namespace, pod.Name)
		if err != nil {
			return false, err.Error(), nil
		}
		reports, err := node.ParseReports(logs)
		return err == nil && len(reports) > 0, "waiting for the pod's report", nil
	}); err != nil {
		stop()
		return nil, fmt.Errorf("the pod did not report: %w", err)
	}
	step("what the pod read from its volume (kubectl logs -n %s %s)", namespace, pod.Name)
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		fmt.Printf("  %s\n", line)
	}
	return stop, nil
}
