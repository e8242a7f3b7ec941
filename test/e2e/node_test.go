package e2e

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/freeport"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/node"
	"github.com/scep-operator/scep-operator/test/stack"
)

// TestNode runs the workload side on a real node (containerd and kubelet on
// this machine): a pod mounts the Secret of a Certificate issued through a
// SCEPProfile, reports what it reads, serves TLS with it, and picks up a
// renewal (a RenewalReq signed with the certificate it holds) while
// running. Machines that cannot run a node skip it, unless
// SCEP_NODE_E2E=required (CI); test/trustmanager starts one too.
func TestNode(t *testing.T) {
	root := envtest.RepoRoot(t)
	node.SkipIfUnavailable(t, root)
	ctx := t.Context()
	const ns = "node-e2e"

	st, err := stack.Up(ctx, stack.Options{
		Root:           root,
		APIServerFlags: node.APIServerFlags,
		// A namespaced Passthrough SCEPProfile keeps its signer Secret
		// beside it, in a namespace the chart grants Secrets in.
		HelmValues:  []string{"rbac.secretNamespaces={" + ns + "}"},
		Progress:    func(f string, a ...any) { t.Logf(f, a...) },
		OperatorLog: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Down)

	nodeStart := time.Now()
	t.Log("starting a node: containerd and kubelet")
	n := node.StartForTest(t, node.Options{
		Root:       root,
		Kubeconfig: st.Kubeconfig,
		Images:     []node.Image{node.CertwatchImage},
		Progress:   func(f string, a ...any) { t.Logf(f, a...) },
	})
	t.Logf("node %q ready in %s", node.Name, time.Since(nodeStart).Round(time.Millisecond))

	c := st.Client()
	if err := st.Env.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// -sign-server-attrs: MicroMDM otherwise issues clientAuth only, which a
	// TLS client refuses from a server.
	srv, err := st.StartSCEPServer("node", micromdm.Options{SignServerAttrs: true})
	if err != nil {
		t.Fatal(err)
	}
	profile := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scep"},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true,
			URL:           srv.URL,
			CAFingerprint: scep.FingerprintOf(srv.CA, crypto.SHA256).Hex(),
			// The renewal below is a RenewalReq signed with the certificate
			// the pod holds (MicroMDM announces Renewal).
			RenewWithRenewalReq: true,
		},
	}
	if err := c.Create(ctx, profile); err != nil {
		t.Fatal(err)
	}
	dnsName := "web." + ns + ".svc.cluster.local"
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: cmapi.CertificateSpec{
			SecretName: "web-tls",
			CommonName: "web." + ns,
			DNSNames:   []string{dnsName},
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048, RotationPolicy: cmapi.RotationPolicyAlways},
			IssuerRef:  cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: "SCEPProfile", Name: profile.Name},
		},
	}
	if err := c.Create(ctx, crt); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, crt, 90*time.Second)
	issued := secretLeaf(t, c, crt)
	if issued == nil {
		t.Fatal("the Certificate is Ready but its Secret holds no certificate")
	}
	caSum := sha256.Sum256(srv.CA.Raw)
	scepCA := hex.EncodeToString(caSum[:])

	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	pod := node.CertwatchPod(ns, "web", crt.Spec.SecretName, port)
	podCreated := time.Now()
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	running, err := n.WaitRunning(ctx, ns, pod.Name, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod %s/%s Running %s after create", ns, pod.Name, time.Since(podCreated).Round(time.Millisecond))

	t.Run("the pod reads the issued certificate, its key and the SCEP CA from its volume", func(t *testing.T) {
		r := waitReport(t, n, ns, pod.Name, issued.SerialNumber.Text(16))
		if !r.KeyMatches || !r.ChainVerified || r.Err != "" {
			t.Errorf("the pod saw: %s", r.Line)
		}
		if r.CASHA256 != scepCA {
			t.Errorf("the pod's ca.crt has SHA-256 %s, the SCEP CA %s", r.CASHA256, scepCA)
		}
		if len(r.DNSNames) != 1 || r.DNSNames[0] != dnsName {
			t.Errorf("the pod's certificate names %v, want [%s]", r.DNSNames, dnsName)
		}
	})

	roots := x509.NewCertPool()
	roots.AddCert(srv.CA)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	t.Run("the pod serves TLS that verifies with the SCEP CA as the only root", func(t *testing.T) {
		got := waitServedSerial(t, addr, roots, dnsName, issued.SerialNumber.Text(16))
		if got.SerialNumber.Cmp(issued.SerialNumber) != 0 {
			t.Errorf("served serial %x, issued %x", got.SerialNumber, issued.SerialNumber)
		}
		// And a client expecting another name refuses it.
		if _, err := handshake(addr, roots, "other."+ns+".svc.cluster.local"); err == nil {
			t.Error("a handshake for a name the certificate lacks succeeded")
		}
	})

	t.Run("a renewal reaches the running pod without a restart", func(t *testing.T) {
		renewed := time.Now()
		renew(t, c, crt)
		var fresh *x509.Certificate
		eventually(t, 90*time.Second, "a new certificate in the Secret", func() (bool, string) {
			fresh = secretLeaf(t, c, crt)
			if fresh == nil {
				return false, "no certificate"
			}
			return fresh.SerialNumber.Cmp(issued.SerialNumber) != 0, "serial " + fresh.SerialNumber.Text(16)
		})
		t.Logf("Secret renewed %s after the renew request (serial %x -> %x)", time.Since(renewed).Round(time.Millisecond), issued.SerialNumber, fresh.SerialNumber)
		// Counted at the server: the first enrollment a PKCSReq, the
		// renewal a RenewalReq.
		if pkcsReqs, renewals := srv.PKIMessages("PKCSReq"), srv.PKIMessages("RenewalReq"); pkcsReqs != 1 || renewals != 1 {
			t.Errorf("MicroMDM saw %d PKCSReqs and %d RenewalReqs; want 1 and 1", pkcsReqs, renewals)
		}

		r := waitReport(t, n, ns, pod.Name, fresh.SerialNumber.Text(16))
		t.Logf("the pod read the new certificate %s after the renew request", time.Since(renewed).Round(time.Millisecond))
		if !r.KeyMatches || !r.ChainVerified || r.CASHA256 != scepCA {
			t.Errorf("after renewal the pod saw: %s", r.Line)
		}
		waitServedSerial(t, addr, roots, dnsName, fresh.SerialNumber.Text(16))
		t.Logf("the pod served the new certificate %s after the renew request", time.Since(renewed).Round(time.Millisecond))

		now, err := n.Clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if now.UID != running.UID || containerID(now) != containerID(running) || restarts(now) != 0 {
			t.Errorf("the pod was restarted: uid %s -> %s, container %s -> %s, restarts %d", running.UID, now.UID, containerID(running), containerID(now), restarts(now))
		}
	})

	if logs, err := n.Logs(ctx, ns, pod.Name); err == nil {
		t.Logf("pod %s/%s log:\n%s", ns, pod.Name, logs)
	}
}

// waitReport waits for the pod to log a volume report for serial (hex).
func waitReport(t *testing.T, n *node.Node, ns, pod, serial string) node.Report {
	t.Helper()
	var found node.Report
	eventually(t, 2*time.Minute, "the pod to report serial "+serial, func() (bool, string) {
		logs, err := n.Logs(t.Context(), ns, pod)
		if err != nil {
			return false, "pod logs: " + err.Error()
		}
		reports, err := node.ParseReports(logs)
		if err != nil {
			return false, err.Error()
		}
		for i := len(reports) - 1; i >= 0; i-- {
			if reports[i].Serial == serial {
				found = reports[i]
				return true, ""
			}
		}
		if len(reports) == 0 {
			return false, "no report yet"
		}
		return false, "last report: " + reports[len(reports)-1].Line
	})
	return found
}

// waitServedSerial waits until the TLS server at addr serves serial (hex),
// verified against roots for name, and returns the served certificate.
func waitServedSerial(t *testing.T, addr string, roots *x509.CertPool, name, serial string) *x509.Certificate {
	t.Helper()
	var served *x509.Certificate
	eventually(t, 2*time.Minute, "the pod to serve serial "+serial, func() (bool, string) {
		leaf, err := handshake(addr, roots, name)
		if err != nil {
			return false, err.Error()
		}
		served = leaf
		return leaf.SerialNumber.Text(16) == serial, "serving serial " + leaf.SerialNumber.Text(16)
	})
	return served
}

// handshake connects to addr trusting roots only and expecting name.
func handshake(addr string, roots *x509.CertPool, name string) (*x509.Certificate, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	if len(state.PeerCertificates) == 0 {
		return nil, errors.New("no peer certificate")
	}
	return state.PeerCertificates[0], nil
}

func containerID(p *corev1.Pod) string {
	if len(p.Status.ContainerStatuses) == 0 {
		return ""
	}
	return p.Status.ContainerStatuses[0].ContainerID
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, cs := range p.Status.ContainerStatuses {
		n += cs.RestartCount
	}
	return n
}
