package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/freeport"
)

// The ServiceAccount and namespace of config/rbac before kustomize renames
// them: the test applies config/rbac as it is.
const (
	operatorNS = "system"
	operatorSA = "controller-manager"
)

// The API server is shared by the package's tests.
var (
	env     *envtest.Env
	envOnce sync.Once
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		_ = env.Environment.Stop()
	}
	os.Exit(code)
}

// sharedEnv starts the API server on first use.
func sharedEnv(t *testing.T) *envtest.Env {
	t.Helper()
	envOnce.Do(func() { env = envtest.StartShared(t) })
	if env == nil {
		t.Fatal("the API server did not start")
	}
	return env
}

// TestMetricsAuthentication runs the manager (run, with the flags of
// config/manager) against an API server as the ServiceAccount that config/rbac
// binds, with the RBAC of config/rbac applied, and scrapes /metrics: a token
// bound to the metrics-reader ClusterRole gets 200, another token 403, no
// token 401, and plain HTTP no metrics at all.
func TestMetricsAuthentication(t *testing.T) {
	env := sharedEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	root := envtest.RepoRoot(t)
	env.Namespace(t, operatorNS)
	env.Namespace(t, "monitoring")
	applyConfigRBAC(t, env.Client, root)

	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	writeServiceAccountKubeconfig(t, env.Config, kubeconfig)
	addr := freeAddress(t)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"--kubeconfig=" + kubeconfig,
			"--leader-elect", "--leader-election-namespace=" + operatorNS,
			"--metrics-bind-address=" + addr, "--metrics-secure=true",
			"--health-probe-bind-address=0",
			"--cluster-resource-namespace=" + operatorNS,
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the manager did not stop within 30s")
		}
	})

	cs := kubernetes.NewForConfigOrDie(env.Config)
	reader := serviceAccountToken(t, cs, "monitoring", "prometheus")
	other := serviceAccountToken(t, cs, "monitoring", "intruder")
	if err := env.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "monitoring", Name: "prometheus"}},
	}); err != nil {
		t.Fatal(err)
	}

	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The certificate is self-signed, made at start.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the test checks authentication, not the certificate
	}}
	url := "https://" + addr + "/metrics"
	// The first scrape waits for the manager to listen.
	if status, body := scrapeEventually(t, https, url, reader, done); status != http.StatusOK || !strings.Contains(body, "# HELP") {
		t.Errorf("metrics-reader token: %d %.200q; want 200 and metrics", status, body)
	}

	// The manager, as the ServiceAccount with config/rbac's roles, syncs its
	// caches and then takes the leader election Lease.
	const leaseName = "scep-operator.scep.certificates.dev"
	for deadline := time.Now().Add(90 * time.Second); ; {
		lease, err := cs.CoordinationV1().Leases(operatorNS).Get(ctx, leaseName, metav1.GetOptions{})
		if err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the manager took no leader election Lease within 90s: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("the manager stopped: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
	}

	for _, c := range []struct {
		name  string
		token string
		want  []int
	}{
		{"no token", "", []int{http.StatusUnauthorized}},
		{"a token without metrics-reader", other, []int{http.StatusForbidden}},
		{"a token that is no token", "not-a-token", []int{http.StatusUnauthorized}},
		{"the metrics-reader token", reader, []int{http.StatusOK}},
	} {
		status, body := scrape(t, https, url, c.token)
		if !slices.Contains(c.want, status) {
			t.Errorf("%s: %d %.200q; want %v", c.name, status, body, c.want)
		}
		const leader = `leader_election_master_status{name="` + leaseName + `"} 1`
		if got := strings.Contains(body, leader); got != (status == http.StatusOK) {
			t.Errorf("%s: %d, metrics shown: %v (%.200q)", c.name, status, got, body)
		}
	}
	// Plain HTTP reaches no metrics.
	if status, body := scrape(t, &http.Client{Timeout: 10 * time.Second}, "http://"+addr+"/metrics", reader); status == http.StatusOK || strings.Contains(body, "# HELP") {
		t.Errorf("plain HTTP: %d %.200q; want a refusal", status, body)
	}
	select {
	case err := <-done:
		t.Fatalf("the manager stopped: %v", err)
	default:
	}
}

// TestMetricsOptions checks the other ways metricsOptions configures the
// endpoint: a certificate from --metrics-cert-path, a path without one, and
// plain HTTP with --metrics-secure=false.
func TestMetricsOptions(t *testing.T) {
	for _, c := range []struct {
		addr   string
		secure bool
		want   string
	}{
		{"", true, ":8443"},
		{"", false, ":8080"},
		{"127.0.0.1:9000", true, "127.0.0.1:9000"},
		{"0", true, "0"},
	} {
		opts, err := metricsOptions(c.addr, c.secure, "")
		if err != nil || opts.BindAddress != c.want || opts.SecureServing != (c.secure && c.want != "0") || (opts.FilterProvider != nil) != opts.SecureServing {
			t.Errorf("metricsOptions(%q, %v): %+v, %v; want address %s", c.addr, c.secure, opts, err, c.want)
		}
	}
	if _, err := metricsOptions("", true, t.TempDir()); err == nil || !strings.Contains(err.Error(), "tls.crt") {
		t.Errorf("a cert path without tls.crt: err = %v", err)
	}

	env := sharedEnv(t)
	httpClient, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(opts metricsserver.Options) {
		t.Helper()
		srv, err := metricsserver.NewServer(opts, env.Config, httpClient)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- srv.Start(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}

	// A mounted certificate is the one served.
	certDir := t.TempDir()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("scep-operator-metrics.scep-system.svc", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(certDir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddress(t)
	opts, err := metricsOptions(addr, true, certDir)
	if err != nil {
		t.Fatal(err)
	}
	serve(opts)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	verifying := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "scep-operator-metrics.scep-system.svc"}}}
	if status, body := scrapeEventually(t, verifying, "https://"+addr+"/metrics", "", nil); status != http.StatusUnauthorized {
		t.Errorf("the mounted certificate, no token: %d %.200q; want 401 over a verified connection", status, body)
	}

	// --metrics-secure=false: plain HTTP, no token needed.
	addr = freeAddress(t)
	if opts, err = metricsOptions(addr, false, certDir); err != nil {
		t.Fatal(err)
	}
	serve(opts)
	if status, body := scrapeEventually(t, &http.Client{Timeout: 10 * time.Second}, "http://"+addr+"/metrics", "", nil); status != http.StatusOK || !strings.Contains(body, "# HELP") {
		t.Errorf("--metrics-secure=false: %d %.200q; want 200 and metrics", status, body)
	}
}

// TestHelp: -h prints the flags (with controller-runtime's --kubeconfig) and
// is no error for main, which exits 0.
func TestHelp(t *testing.T) {
	// The flag set prints its usage to os.Stderr.
	usage, err := os.Create(filepath.Join(t.TempDir(), "usage"))
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = usage
	err = run(t.Context(), []string{"-h"})
	os.Stderr = stderr
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v; want flag.ErrHelp (main exits 0)", err)
	}
	b, _ := os.ReadFile(usage.Name())
	for _, f := range []string{"-kubeconfig", "-zap-log-level", "-metrics-secure", "-metrics-cert-path"} {
		if !strings.Contains(string(b), "\n  "+f+" ") && !strings.Contains(string(b), "\n  "+f+"\n") {
			t.Errorf("-h does not list %s:\n%s", f, b)
		}
	}
	if err := run(t.Context(), []string{"--kubeconfig=" + filepath.Join(t.TempDir(), "missing"), "--metrics-bind-address=0", "--health-probe-bind-address=0"}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("run with a missing --kubeconfig = %v; want an error naming it", err)
	}
}

// applyConfigRBAC creates the objects of config/rbac/kustomization.yaml's
// resources as they are (namespace system, no name prefix).
func applyConfigRBAC(t *testing.T, c client.Client, root string) {
	t.Helper()
	dir := filepath.Join(root, "config", "rbac")
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	for _, f := range k.Resources {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var o map[string]any
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(o) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: o}
			if err := c.Create(t.Context(), u); err != nil {
				t.Fatalf("creating %s %s of %s: %v", u.GetKind(), u.GetName(), f, err)
			}
		}
	}
}

// writeServiceAccountKubeconfig writes a kubeconfig that reaches the API
// server as the operator's ServiceAccount (admin credentials impersonating it).
func writeServiceAccountKubeconfig(t *testing.T, cfg *rest.Config, path string) {
	t.Helper()
	if err := envtest.WriteKubeconfig(cfg, path); err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range kc.AuthInfos {
		a.Impersonate = "system:serviceaccount:" + operatorNS + ":" + operatorSA
		a.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNS, "system:authenticated"}
	}
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
}

// serviceAccountToken creates a ServiceAccount and returns a token of it.
func serviceAccountToken(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// freeAddress is a loopback address with a port nothing listens on now,
// outside the ephemeral range (test/freeport).
func freeAddress(t *testing.T) string {
	t.Helper()
	addr, err := freeport.LoopbackAddress()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// scrape GETs url with token as a bearer token (none when empty) and
// returns the status and body; a failed connection is status 0.
func scrape(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// scrapeEventually is scrape, retried until the server listens (60s), or
// until stopped reports that what should serve has ended.
func scrapeEventually(t *testing.T, c *http.Client, url, token string, stopped <-chan error) (int, string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body := scrape(t, c, url, token)
		if status != 0 {
			return status, body
		}
		select {
		case err := <-stopped:
			t.Fatalf("stopped before serving %s: %v", url, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no answer within 60s: %s", url, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
