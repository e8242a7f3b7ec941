package install

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/node"
	"github.com/scep-operator/scep-operator/test/stack"
)

const (
	tenant    = "demo"
	challenge = "install-test-challenge"
)

// TestHelmInstall installs the operator as a user does and follows one
// release through its life: helm install of the image built here, a
// Certificate issued by the operator Pod (its own ServiceAccount token, its
// own probes), metrics scraped through the chart's Service with the
// authentication the chart configures, helm test, a helm upgrade that rolls
// the Pod, replicaCount=2 with a leader handover, and helm uninstall
// keeping the CRDs. The SCEP server counts every PKCSReq per transaction:
// nothing is issued twice.
func TestHelmInstall(t *testing.T) {
	root := envtest.RepoRoot(t)
	if err := Unavailable(root); err != nil {
		if os.Getenv(node.RequiredEnv) == "required" {
			t.Fatalf("%s=required, but this machine cannot install: %v", node.RequiredEnv, err)
		}
		t.Skipf("no cluster on this machine: %v", err)
	}
	ctx := t.Context()
	in, err := Up(ctx, Options{Root: root, Namespaces: []string{tenant}, Values: []string{"rebuild.namespaces={" + tenant + "}"}, Progress: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Down)
	c := in.Cluster.Env.Client
	cs := in.Cluster.Node.Clientset

	srv, err := micromdm.New(t.TempDir(), micromdm.Options{Challenge: challenge, ListenAddress: net.JoinHostPort(in.Cluster.Gateway.String(), "0")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	samples, err := ReadSamples(root, tenant, srv, challenge)
	if err != nil {
		t.Fatal(err)
	}
	requests, err := stack.WatchRequests(ctx, in.Cluster.Env.Config, tenant)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(t *testing.T, crt *cmapi.Certificate) {
		t.Helper()
		if err := c.Create(ctx, crt); err != nil {
			t.Fatal(err)
		}
		if err := in.Cluster.Wait(ctx, 2*time.Minute, "Certificate "+crt.Name+" to be Ready", func() (bool, string) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(crt), crt); err != nil {
				return false, err.Error()
			}
			return stack.IsReady(crt), stack.ReadyMessage(crt)
		}); err != nil {
			t.Fatalf("%v\n%s", err, in.Diagnose(ctx))
		}
		exactlyOnce(t, ctx, in, c, srv, requests)
	}

	t.Run("the operator runs as the chart's Deployment", func(t *testing.T) {
		pods, err := in.OperatorPods(ctx)
		if err != nil || len(pods) != 1 {
			t.Fatalf("operator pods: %d, %v", len(pods), err)
		}
		p := pods[0]
		if p.Spec.NodeName != node.Name || p.Spec.HostNetwork {
			t.Errorf("pod on node %q, hostNetwork %v: want scheduled to %q on the pod network", p.Spec.NodeName, p.Spec.HostNetwork, node.Name)
		}
		if p.Spec.ServiceAccountName != in.Release {
			t.Errorf("serviceAccountName %q, want %q", p.Spec.ServiceAccountName, in.Release)
		}
		if !hasProjectedToken(p) {
			t.Error("the pod has no projected ServiceAccount token: it would not authenticate as itself")
		}
		if cs := p.Status.ContainerStatuses; len(cs) != 1 || !cs[0].Ready || !strings.Contains(cs[0].Image, ImageRepository) {
			t.Errorf("container statuses %+v: want one Ready container of %s", cs, ImageRepository)
		}
	})

	t.Run("a Certificate is issued by the operator Pod", func(t *testing.T) {
		for _, o := range []client.Object{samples.Secret, samples.Profile} {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		issue(t, samples.Certificate)
		// The request's status was written by the operator's own
		// ServiceAccount, with no impersonation: its Pod's token.
		events, err := in.Cluster.AuditEvents()
		if err != nil {
			t.Fatal(err)
		}
		operator := "system:serviceaccount:" + in.Namespace + ":" + in.Release
		wrote := 0
		for _, e := range events {
			if e.ObjectRef == nil || e.ObjectRef.Resource != "certificaterequests" || e.ObjectRef.Subresource != "status" || e.ObjectRef.Namespace != tenant {
				continue
			}
			if e.User.Username == operator {
				wrote++
				if e.ImpersonatedUser != nil {
					t.Errorf("the operator impersonated %q", e.ImpersonatedUser.Username)
				}
			}
		}
		if wrote == 0 {
			t.Errorf("no write of a CertificateRequest's status by %s in the audit log (%d events)", operator, len(events))
		}
		logs := operatorLogs(t, ctx, in)
		if strings.Contains(logs, challenge) {
			t.Error("the operator's log holds the challenge password")
		}
	})

	t.Run("metrics through the chart's Service, with its authentication", func(t *testing.T) {
		url := metricsURL(t, ctx, in)
		if code, _ := get(t, url, ""); code != http.StatusUnauthorized {
			t.Errorf("a scrape without a token: HTTP %d, want 401", code)
		}
		stranger := serviceAccountToken(t, ctx, in, "stranger", "")
		if code, _ := get(t, url, stranger); code != http.StatusForbidden {
			t.Errorf("a scrape with a token not bound to metrics-reader: HTTP %d, want 403", code)
		}
		scraper := serviceAccountToken(t, ctx, in, "scraper", in.Release+"-metrics-reader")
		var body string
		// The API server's authorizer sees a new binding within moments.
		if err := in.Cluster.Wait(ctx, 30*time.Second, "a scrape as metrics-reader", func() (bool, string) {
			var code int
			code, body = get(t, url, scraper)
			return code == http.StatusOK, fmt.Sprintf("HTTP %d: %s", code, tail(body, 3))
		}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, `scep_enrollments_total{`) {
			t.Errorf("the metrics lack scep_enrollments_total after an issuance:\n%s", tail(body, 20))
		}
		if strings.Contains(body, challenge) {
			t.Error("the metrics hold the challenge password")
		}
	})

	t.Run("helm test", func(t *testing.T) {
		if out, err := in.Helm.Run(ctx, "test", in.Release, "--namespace", in.Namespace, "--timeout", "3m"); err != nil {
			logs, _ := in.Cluster.Node.Logs(ctx, in.Namespace, in.Release+"-test")
			t.Fatalf("%v\n%s\n--- test pod's log ---\n%s", err, out, logs)
		}
	})

	t.Run("helm upgrade rolls the Pod and issuance continues", func(t *testing.T) {
		before := podNames(t, ctx, in)
		if _, err := in.Helm.Run(ctx, append([]string{"upgrade", in.Release, in.Chart, "--namespace", in.Namespace, "--reuse-values", "--wait", "--timeout", "5m"}, SetFlags([]string{"logging.level=debug"})...)...); err != nil {
			t.Fatalf("%v\n%s", err, in.Diagnose(ctx))
		}
		waitPods(t, ctx, in, 1, before)
		issue(t, samples.CertificateNamed("after-upgrade"))
	})

	t.Run("two replicas: deleting the leader hands over", func(t *testing.T) {
		before := podNames(t, ctx, in)
		if _, err := in.Helm.Run(ctx, append([]string{"upgrade", in.Release, in.Chart, "--namespace", in.Namespace, "--reuse-values", "--wait", "--timeout", "5m"}, SetFlags([]string{"replicaCount=2"})...)...); err != nil {
			t.Fatalf("%v\n%s", err, in.Diagnose(ctx))
		}
		// Leader election is switched on with the second replica: the
		// arguments change, so both Pods are new.
		waitPods(t, ctx, in, 2, before)
		leader := leaderPod(t, ctx, in)
		t.Logf("leader: %s", leader)
		issue(t, samples.CertificateNamed("two-replicas"))
		if err := cs.CoreV1().Pods(in.Namespace).Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := in.Cluster.Wait(ctx, 2*time.Minute, "another Pod to lead", func() (bool, string) {
			l, err := leaseHolder(ctx, in)
			if err != nil {
				return false, err.Error()
			}
			return l != "" && l != leader, "holder " + l
		}); err != nil {
			t.Fatalf("%v\n%s", err, in.Diagnose(ctx))
		}
		issue(t, samples.CertificateNamed("after-handover"))
	})

	t.Run("helm uninstall removes the release and keeps the CRDs", func(t *testing.T) {
		if _, err := in.Helm.Run(ctx, "uninstall", in.Release, "--namespace", in.Namespace, "--wait", "--timeout", "2m"); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Deployment(ctx); !apierrors.IsNotFound(err) {
			t.Errorf("the Deployment after uninstall: %v, want NotFound", err)
		}
		if out, err := in.Helm.Run(ctx, "list", "--namespace", in.Namespace, "--short"); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("helm list after uninstall: %q, %v", out, err)
		}
		for _, name := range []string{"scepprofiles.scep.certificates.dev", "clusterscepprofiles.scep.certificates.dev"} {
			crd := &unstructured.Unstructured{}
			crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
			if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
				t.Errorf("CRD %s after uninstall: %v (helm keeps CRDs from crds/)", name, err)
			}
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(samples.Profile), samples.Profile); err != nil {
			t.Errorf("the SCEPProfile after uninstall: %v", err)
		}
	})
	exactlyOnce(t, ctx, in, c, srv, requests)
}

// exactlyOnce checks, at the SCEP server, one PKCSReq for each transaction
// of a CertificateRequest the tenant namespace held, and none for a
// transaction no request derives. The namespace's requests must all have
// been sent. A transaction of a request cert-manager replaced by a new
// revision and deleted is logged, not counted as a resend: counting
// PKCSReqs against Certificates once saw 5 for 4 after the handover and
// could not say which.
func exactlyOnce(t *testing.T, ctx context.Context, in *Install, c client.Client, srv *micromdm.Server, requests *stack.RequestLog) {
	t.Helper()
	var list cmapi.CertificateRequestList
	// A revision cert-manager makes just after the last one was issued
	// is counted once it is finished, not while it waits to be sent.
	if err := in.Cluster.Wait(ctx, 2*time.Minute, "every request of "+tenant+" to be finished", func() (bool, string) {
		if err := c.List(ctx, &list, client.InNamespace(tenant)); err != nil {
			return false, err.Error()
		}
		unfinished := stack.Unfinished(list.Items)
		return len(unfinished) == 0, fmt.Sprintf("in flight: %v", unfinished)
	}); err != nil {
		t.Fatalf("%v\n%s", err, in.Diagnose(ctx))
	}
	requests.ReportExactlyOnce(t, "the SCEP server", srv.PKCSReqTransactions(), list.Items)
}

func init() {
	// envtest logs through controller-runtime's logger.
	ctrllog.SetLogger(logr.Discard())
}

func hasProjectedToken(p corev1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil {
				return true
			}
		}
	}
	return false
}

func operatorLogs(t *testing.T, ctx context.Context, in *Install) string {
	t.Helper()
	pods, err := in.OperatorPods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range pods {
		logs, err := in.Cluster.Node.Logs(ctx, p.Namespace, p.Name)
		if err != nil {
			t.Fatalf("logs of %s: %v", p.Name, err)
		}
		b.WriteString(logs)
	}
	return b.String()
}

func podNames(t *testing.T, ctx context.Context, in *Install) map[string]bool {
	t.Helper()
	pods, err := in.OperatorPods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range pods {
		names[p.Name] = true
	}
	return names
}

// waitPods waits until exactly want operator Pods run, all Ready, none of
// them in old.
func waitPods(t *testing.T, ctx context.Context, in *Install, want int, old map[string]bool) {
	t.Helper()
	if err := in.Cluster.Wait(ctx, 3*time.Minute, fmt.Sprintf("%d new Ready operator Pods", want), func() (bool, string) {
		pods, err := in.OperatorPods(ctx)
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, p := range pods {
			if old[p.Name] {
				return false, "old pod " + p.Name + " still there"
			}
			for _, cs := range p.Status.ContainerStatuses {
				if cs.Ready {
					ready++
				}
			}
		}
		return len(pods) == want && ready == want, fmt.Sprintf("%d pods, %d ready", len(pods), ready)
	}); err != nil {
		t.Fatalf("%v\n%s", err, in.Diagnose(ctx))
	}
}

// leaseHolder is the Pod named by the leader election Lease.
func leaseHolder(ctx context.Context, in *Install) (string, error) {
	l, err := in.Cluster.Node.Clientset.CoordinationV1().Leases(in.Namespace).Get(ctx, "scep-operator.scep.certificates.dev", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	holder := ptr.Deref(l.Spec.HolderIdentity, "")
	pod, _, _ := strings.Cut(holder, "_")
	return pod, nil
}

func leaderPod(t *testing.T, ctx context.Context, in *Install) string {
	t.Helper()
	var leader string
	if err := in.Cluster.Wait(ctx, 2*time.Minute, "a leader among the new Pods", func() (bool, string) {
		l, err := leaseHolder(ctx, in)
		if err != nil {
			return false, err.Error()
		}
		leader = l
		return podNames(t, ctx, in)[l], "holder " + l
	}); err != nil {
		t.Fatal(err)
	}
	return leader
}

func metricsURL(t *testing.T, ctx context.Context, in *Install) string {
	t.Helper()
	svc, err := in.Cluster.Node.Clientset.CoreV1().Services(in.Namespace).Get(ctx, in.Release+"-metrics", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.ClusterIP == "" {
		t.Fatalf("metrics Service: clusterIP %q, ports %+v", svc.Spec.ClusterIP, svc.Spec.Ports)
	}
	return "https://" + net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port))) + "/metrics"
}

// serviceAccountToken makes a ServiceAccount in the release namespace,
// binds it to clusterRole (none when empty) and returns a token for it.
func serviceAccountToken(t *testing.T, ctx context.Context, in *Install, name, clusterRole string) string {
	t.Helper()
	cs := in.Cluster.Node.Clientset
	if _, err := cs.CoreV1().ServiceAccounts(in.Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if clusterRole != "" {
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "install-test-" + name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: in.Namespace}},
		}
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	tr, err := cs.CoreV1().ServiceAccounts(in.Namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// get GETs url (the operator's self-signed metrics certificate is not
// verified: what is tested is who may scrape) and returns the status and
// body.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // see above
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
