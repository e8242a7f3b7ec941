// Package approverpolicy_test runs cert-manager's approver-policy (its own
// main, from its Go module at the version go.mod pins) against the whole
// stack with cert-manager's default approver off: the chart's example
// CertificateRequestPolicy approves a request it allows, which the operator
// then issues, and denies one it does not, which never reaches the SCEP
// server.
//
// approver-policy's controllers live in its pkg/internal, which Go forbids
// importing from another module; its only public entry point,
// pkg/cmd.ExecutePolicyApprover, installs a signal handler and exits the
// process. So the test binary re-executes itself as approver-policy
// (TestMain) rather than calling its controllers in-process.
package approverpolicy_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apcmd "github.com/cert-manager/approver-policy/pkg/cmd"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/test/certmanager"
	"github.com/scep-operator/scep-operator/test/freeport"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stack"
)

// asApproverPolicy, when set in the environment, makes the test binary run
// approver-policy with these arguments (one per line) instead of the tests.
const asApproverPolicy = "SCEP_TEST_RUN_APPROVER_POLICY"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(asApproverPolicy); ok {
		os.Args = append([]string{"approver-policy"}, strings.Split(args, "\n")...)
		apcmd.ExecutePolicyApprover() // exits
	}
	os.Exit(m.Run())
}

// The requester approver-policy checks "use" for: the identity cert-manager's
// webhook writes into spec.username (envtest runs no webhook, so the test
// writes it, as the webhook would for a user creating the request).
const requester = "alice"

func TestApproverPolicy(t *testing.T) {
	apCRDs := approverPolicyCRDs(t)
	var controllers []string
	for _, c := range certmanager.DefaultControllers() {
		if c != "certificaterequests-approver" {
			controllers = append(controllers, c)
		}
	}
	st, err := stack.Up(t.Context(), stack.Options{
		ExtraCRDPaths:          []string{apCRDs},
		CertManagerControllers: controllers,
		HelmValues: []string{
			"approver.enabled=false",
			"approverPolicy.enabled=true",
			"approverPolicy.subjects[0].kind=User",
			"approverPolicy.subjects[0].name=" + requester,
			"approverPolicy.subjects[0].apiGroup=rbac.authorization.k8s.io",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Down)
	c := st.Client()
	for _, ns := range []string{"approver-policy", "apps"} {
		if err := st.Env.CreateNamespace(t.Context(), ns); err != nil {
			t.Fatal(err)
		}
	}
	startApproverPolicy(t, st.Kubeconfig)

	srv := scepserver.Start(t, scepserver.Behavior{})
	if err := c.Create(t.Context(), &scepv1alpha1.ClusterSCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "corp"},
		Spec:       scepv1alpha1.SCEPProfileSpec{URL: srv.URL, AllowAnySubject: true, AllowAnySubjectAltNames: true},
	}); err != nil {
		t.Fatal(err)
	}

	// Within the chart's example policy (*.example.com): approved by
	// approver-policy, then issued.
	inside := request(t, c, "inside", "web.example.com")
	cond := waitCondition(t, c, inside, func(cr *cmapi.CertificateRequest) (bool, string) {
		ready := condition(cr, cmapi.CertificateRequestConditionReady)
		return ready != nil && ready.Status == cmmeta.ConditionTrue, fmt.Sprint(cr.Status.Conditions)
	})
	if approved := condition(cond, cmapi.CertificateRequestConditionApproved); approved == nil || approved.Reason != "policy.cert-manager.io" {
		t.Errorf("the issued request's Approved condition is %+v; want one by approver-policy (reason policy.cert-manager.io)", approved)
	}
	if got := messageTypes(srv); got["PKCSReq"] != 1 {
		t.Errorf("the SCEP server saw pkiMessages %v for the approved request; want one PKCSReq", got)
	}

	// Outside it: denied by approver-policy. issuer-lib leaves a denied
	// request alone (cert-manager's Certificate controller fails its
	// Certificate), so nothing is sent.
	outside := request(t, c, "outside", "evil.other.test")
	cond = waitCondition(t, c, outside, func(cr *cmapi.CertificateRequest) (bool, string) {
		denied := condition(cr, cmapi.CertificateRequestConditionDenied)
		return denied != nil && denied.Status == cmmeta.ConditionTrue, fmt.Sprint(cr.Status.Conditions)
	})
	denied := condition(cond, cmapi.CertificateRequestConditionDenied)
	if denied.Reason != "policy.cert-manager.io" || !strings.Contains(denied.Message, "evil.other.test") {
		t.Errorf("the Denied condition is %+v; want one by approver-policy naming the refused name", denied)
	}
	if approved := condition(cond, cmapi.CertificateRequestConditionApproved); approved != nil {
		t.Errorf("the denied request is also Approved: %+v", approved)
	}
	// A barrier: a request created after the denial is approved and issued,
	// so the operator has worked through its queue since; the denied one
	// still never reached the server.
	after := request(t, c, "after", "api.example.com")
	waitCondition(t, c, after, func(cr *cmapi.CertificateRequest) (bool, string) {
		ready := condition(cr, cmapi.CertificateRequestConditionReady)
		return ready != nil && ready.Status == cmmeta.ConditionTrue, fmt.Sprint(cr.Status.Conditions)
	})
	if got := messageTypes(srv); got["PKCSReq"] != 2 {
		t.Errorf("the SCEP server saw pkiMessages %v; want two PKCSReqs (the approved requests): a denied request was sent", got)
	}
	for _, crt := range srv.Issued() {
		if crt.Subject.CommonName == "evil.other.test" {
			t.Errorf("the SCEP server issued %s for the denied request", crt.Subject)
		}
	}
	if ready := condition(mustGet(t, c, outside), cmapi.CertificateRequestConditionReady); ready != nil && ready.Status == cmmeta.ConditionTrue {
		t.Errorf("the denied request is Ready: %+v", ready)
	}
}

// mustGet reads cr again.
func mustGet(t *testing.T, c client.Client, cr *cmapi.CertificateRequest) *cmapi.CertificateRequest {
	t.Helper()
	got := &cmapi.CertificateRequest{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(cr), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// approverPolicyCRDs is the directory of approver-policy's CRDs in the
// module cache.
func approverPolicyCRDs(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/approver-policy").Output()
	if err != nil {
		t.Fatalf("locating approver-policy's module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
}

// startApproverPolicy runs approver-policy (this binary, re-executed) with
// the admin kubeconfig; its webhook listens on loopback only and no API
// server calls it.
func startApproverPolicy(t *testing.T, kubeconfig string) {
	t.Helper()
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-election-namespace=approver-policy",
		"--metrics-bind-address=0",
		"--readiness-probe-bind-address=0",
		"--webhook-host=127.0.0.1",
		fmt.Sprintf("--webhook-port=%d", port),
		"--webhook-ca-secret-namespace=approver-policy",
		"-v=2",
	}
	logs := &stack.LogBuffer{}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), asApproverPolicy+"="+strings.Join(args, "\n"))
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("approver-policy's logs:\n%s", logs.String())
		}
	})
}

// request creates a CertificateRequest for name, by requester, for the
// ClusterSCEPProfile corp.
func request(t *testing.T, c client.Client, name, dnsName string) *cmapi.CertificateRequest {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName}}, key)
	if err != nil {
		t.Fatal(err)
	}
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name},
		Spec: cmapi.CertificateRequestSpec{
			Request:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			IssuerRef: cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: "ClusterSCEPProfile", Name: "corp"},
			Usages:    []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageServerAuth},
			Username:  requester,
			Groups:    []string{"system:authenticated"},
		},
	}
	if err := c.Create(t.Context(), cr); err != nil {
		t.Fatal(err)
	}
	return cr
}

// waitCondition polls cr until done says so, for at most two minutes.
func waitCondition(t *testing.T, c client.Client, cr *cmapi.CertificateRequest, done func(*cmapi.CertificateRequest) (bool, string)) *cmapi.CertificateRequest {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := &cmapi.CertificateRequest{}
		last := ""
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(cr), got); err != nil {
			last = err.Error()
		} else {
			ok, msg := done(got)
			if ok {
				return got
			}
			last = msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("CertificateRequest %s: timed out: %s", cr.Name, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// messageTypes counts the pkiMessages the server received by type.
func messageTypes(srv *scepserver.Server) map[string]int {
	out := map[string]int{}
	for _, r := range srv.PKIRequests() {
		out[r.MessageType]++
	}
	return out
}

func condition(cr *cmapi.CertificateRequest, typ cmapi.CertificateRequestConditionType) *cmapi.CertificateRequestCondition {
	i := slices.IndexFunc(cr.Status.Conditions, func(c cmapi.CertificateRequestCondition) bool { return c.Type == typ })
	if i < 0 {
		return nil
	}
	return &cr.Status.Conditions[i]
}
