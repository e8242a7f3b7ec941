package controllers_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"go.uber.org/zap/zapcore"
	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/hygiene"
	"github.com/scep-operator/scep-operator/test/ndes"
)

// The API server is shared by the package's tests; each test works in its
// own namespace and runs its own manager.
var (
	env     *envtest.Env
	envOnce sync.Once
)

// clusterResourceNamespace holds the Secrets of ClusterSCEPProfiles in tests.
const clusterResourceNamespace = "scep-system"

// parallelTests is how many parallel tests run at once unless -parallel
// says otherwise. They mostly wait (on retry intervals, the one-minute
// pendingTimeout of TestFaultMatrix's PENDING case, profile checks), not
// compute, so more of them than the machine has cores.
const parallelTests = 8

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		if err := flag.Set("test.parallel", strconv.Itoa(parallelTests)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	code := m.Run()
	if env != nil {
		if code == 0 {
			code = sweep()
		}
		_ = env.Environment.Stop()
	}
	os.Exit(code)
}

// Everything the package's managers logged, and secrets no Secret holds
// (NDES one-time passwords), for the secret-hygiene sweep.
var (
	allLogs    logBuffer
	neverShown struct {
		sync.Mutex
		list []hygiene.Secret
	}
)

// sweep searches what every test left behind (logs, Events, statuses of
// the shared API server) for every secret value the tests used: none may
// appear. It returns the exit code.
func sweep() int {
	neverShown.Lock()
	extra := neverShown.list
	neverShown.Unlock()
	allLogs.mu.Lock()
	logs := string(allLogs.buf)
	allLogs.mu.Unlock()
	r, err := hygiene.Sweep(context.Background(), env.Client, logs, extra...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "secret hygiene sweep:", err)
		return 1
	}
	fmt.Println("secret hygiene sweep:", r)
	if len(r.Findings) > 0 {
		fmt.Fprintln(os.Stderr, "secrets were shown:\n  "+strings.Join(r.Findings, "\n  "))
		return 1
	}
	return 0
}

// startNDES starts the NDES emulator; the one-time passwords it issues are
// swept for at the end.
func startNDES(t *testing.T, opts ndes.Options) *ndes.Server {
	t.Helper()
	srv := ndes.Start(t, opts)
	t.Cleanup(func() {
		neverShown.Lock()
		defer neverShown.Unlock()
		for _, pw := range srv.IssuedPasswords() {
			neverShown.list = append(neverShown.list, hygiene.Secret{Where: "NDES one-time password", Value: pw})
		}
	})
	return srv
}

// apiServer starts the shared API server on first use.
func apiServer(t *testing.T) *envtest.Env {
	t.Helper()
	envOnce.Do(func() {
		// The shared server outlives this test, so it is stopped in TestMain.
		env = envtest.StartShared(t)
		env.Namespace(t, clusterResourceNamespace)
	})
	if env == nil {
		t.Fatal("the API server did not start")
	}
	return env
}

// Tests run one after another unless they call parallel. A parallel test
// runs beside the others once the sequential ones are done (Go's
// t.Parallel), so what a test's manager sees must be that test's alone:
//   - its manager's cache holds only the namespaces the test made before
//     starting it (and the cluster resource namespace), so it never works
//     on another test's SCEPProfiles or CertificateRequests;
//   - it makes no cluster-scoped object (ClusterSCEPProfile,
//     CertificateSigningRequest, ClusterTrustBundle), which every manager
//     would watch; the sequential tests that make them delete them when they
//     end (startManager), before any parallel test resumes;
//   - it uses no fixed port and no port it let go of and expects to find
//     again (test/mitkdc's KDC restarts on its port: TestNDESKerberos stays
//     sequential).
//
// The state below is kept per test (by t.Name()), for the helpers to find.
var (
	testsMu sync.Mutex
	tests   = map[string]*testState{}
)

// testState is what the helpers know of one test or subtest.
type testState struct {
	parallel   bool
	namespaces []string
	// signer is that of the manager the test started last.
	signer *signer.Signer
}

// stateOfTest returns t's state, made on first use. Callers hold testsMu.
func stateOfTest(t *testing.T) *testState {
	st := tests[t.Name()]
	if st == nil {
		st = &testState{}
		tests[t.Name()] = st
	}
	return st
}

// lineage is t's name and those of the tests it is a subtest of, nearest
// first.
func lineage(t *testing.T) []string {
	names := []string{t.Name()}
	for n := t.Name(); strings.Contains(n, "/"); {
		n = n[:strings.LastIndex(n, "/")]
		names = append(names, n)
	}
	return names
}

// parallel runs the test beside the other parallel tests (t.Parallel) and
// makes its managers watch only its own namespaces. Call it first, and
// make the test's namespaces before its manager.
func parallel(t *testing.T) {
	t.Helper()
	t.Parallel()
	testsMu.Lock()
	defer testsMu.Unlock()
	stateOfTest(t).parallel = true
}

// isParallel reports whether t or a test it belongs to called parallel.
func isParallel(t *testing.T) bool {
	testsMu.Lock()
	defer testsMu.Unlock()
	for _, n := range lineage(t) {
		if st := tests[n]; st != nil && st.parallel {
			return true
		}
	}
	return false
}

// namespacesOf are the namespaces t and the tests it belongs to made so far.
func namespacesOf(t *testing.T) []string {
	testsMu.Lock()
	defer testsMu.Unlock()
	var out []string
	for _, n := range lineage(t) {
		if st := tests[n]; st != nil {
			out = append(out, st.namespaces...)
		}
	}
	return out
}

var nsCounter atomic.Int64

// namespace makes a fresh namespace for a test.
//
// The test's SCEPProfiles are deleted when it ends. envtest runs no
// namespace controller, so they would otherwise outlive the test, and every
// later test's manager would go on checking them: against a test server
// that is gone, or, once the kernel hands its port to a later test's
// server, against that one, which then counts requests that test never
// caused.
func namespace(t *testing.T) string {
	t.Helper()
	e := apiServer(t)
	ns := e.Namespace(t, fmt.Sprintf("t%d-%d", nsCounter.Add(1), time.Now().UnixNano()%100000))
	testsMu.Lock()
	st := stateOfTest(t)
	st.namespaces = append(st.namespaces, ns)
	testsMu.Unlock()
	t.Cleanup(func() {
		if err := e.Client.DeleteAllOf(context.Background(), &scepv1alpha1.SCEPProfile{}, client.InNamespace(ns)); err != nil {
			t.Logf("deleting the SCEPProfiles of %s: %v", ns, err)
		}
	})
	return ns
}

// manager runs the operator's controllers against the shared API server
// until stop is called or the test ends.
type manager struct {
	cancel context.CancelFunc
	done   chan error
	log    *logBuffer
}

// logBuffer keeps everything a manager logged, so tests can check that no
// secret reached the logs.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	b.mu.Unlock()
	return len(p), nil
}

// logs returns what the manager logged so far.
func (m *manager) logs() string {
	m.log.mu.Lock()
	defer m.log.mu.Unlock()
	return string(m.log.buf)
}

// startManager starts the controllers on a new manager; opts change the
// controllers' options (the defaults suit most tests). The manager of a
// parallel test watches only the test's namespaces; that of a sequential
// test watches the whole cluster, and the cluster-scoped objects its test
// made are deleted when it ends.
func startManager(t *testing.T, opts ...func(*controllers.Options)) *manager {
	t.Helper()
	e := apiServer(t)
	cacheOpts := controllers.CacheOptions()
	if isParallel(t) {
		nss := namespacesOf(t)
		if len(nss) == 0 {
			t.Fatal("a parallel test makes its namespaces before its manager, which watches only them")
		}
		cacheOpts.DefaultNamespaces = map[string]cache.Config{clusterResourceNamespace: {}}
		for _, ns := range nss {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	} else {
		// Registered before the manager's stop, so it runs after it: a
		// ClusterSCEPProfile left behind would be checked by every later
		// manager, against a test server that is gone or, once the kernel
		// hands its port to another test's server, against that one.
		t.Cleanup(func() { deleteClusterScoped(t, e) })
	}
	logs := &logBuffer{}
	mgr, err := ctrl.NewManager(e.Config, ctrl.Options{
		// A scheme of its own: issuer-lib's setup adds cert-manager's types
		// to the manager's scheme, a map write that would race with the
		// other parallel managers' reads of a shared one.
		Scheme:                 envtest.NewScheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Logger:                 zap.New(zap.UseDevMode(true), zap.Level(zapcore.Level(-5)), zap.WriteTo(io.MultiWriter(testWriter{t}, logs, &allLogs))),
		Client:                 controllers.ClientOptions(),
		Cache:                  cacheOpts,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := controllers.Options{
		ClusterResourceNamespace: clusterResourceNamespace,
		CheckInterval:            time.Minute,
		ClusterDomain:            "cluster.local",
		MaxRetryDuration:         time.Minute,
		Logger:                   mgr.GetLogger(),
	}
	for _, change := range opts {
		change(&o)
	}
	sg, err := controllers.Setup(ctx, mgr, o)
	if err != nil {
		t.Fatal(err)
	}
	testsMu.Lock()
	stateOfTest(t).signer = sg
	testsMu.Unlock()
	m := &manager{cancel: cancel, done: make(chan error, 1), log: logs}
	go func() { m.done <- mgr.Start(ctx) }()
	t.Cleanup(m.stop)
	return m
}

// deleteClusterScoped deletes every ClusterSCEPProfile and
// CertificateSigningRequest, once a sequential test is done with them.
func deleteClusterScoped(t *testing.T, e *envtest.Env) {
	for _, obj := range []client.Object{&scepv1alpha1.ClusterSCEPProfile{}, &certificatesv1.CertificateSigningRequest{}} {
		if err := e.Client.DeleteAllOf(context.Background(), obj); err != nil {
			t.Errorf("deleting every %T: %v", obj, err)
		}
	}
}

// latestSigner is the signer of the manager t (or the test it belongs to)
// started last.
func latestSigner(t *testing.T) *signer.Signer {
	testsMu.Lock()
	defer testsMu.Unlock()
	for _, n := range lineage(t) {
		if st := tests[n]; st != nil && st.signer != nil {
			return st.signer
		}
	}
	return nil
}

// pastLeadSecond waits until a request created now is newer, to the
// signer, than the moment the latest manager started to lead.
// creationTimestamp has whole seconds, so a request created in that same
// second counts as older and is first asked about with a CertPoll (the
// safe choice: another leader may have sent it). Tests that count
// PKIOperations exactly create their requests after that second; the wait
// is usually none, as a profile takes longer than that to become Ready.
func pastLeadSecond(t *testing.T) {
	t.Helper()
	sg := latestSigner(t)
	if sg == nil {
		return
	}
	var since time.Time
	eventually(t, 30*time.Second, "the manager to lead", func() (bool, string) {
		since = sg.LeadingSince()
		return !since.IsZero(), "not leading yet"
	})
	if wait := time.Until(since.Truncate(time.Second).Add(time.Second)); wait > 0 {
		time.Sleep(wait) // until a clock boundary, not for something to happen
	}
}

// stop stops the manager and waits for it to return.
func (m *manager) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	m.cancel = nil
}

// testWriter sends manager logs to t.Log, shown on failure or with -v.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	// A manager's goroutines (the Event broadcaster's retries) may still
	// log while the test's cleanup stops it; t.Log would panic after the
	// test ended.
	if w.t.Context().Err() == nil {
		w.t.Log(string(p))
	}
	return len(p), nil
}

// eventually polls cond every 100 ms until it returns true, or fails the
// test after timeout with the last message.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	msg := ""
	for {
		var ok bool
		ok, msg = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var (
	keyMu sync.Mutex
	keys  = map[int][]*rsa.PrivateKey{}
)

// rsaKey returns the i-th RSA key of a size, generated once per test binary.
func rsaKey(bits, i int) *rsa.PrivateKey {
	keyMu.Lock()
	defer keyMu.Unlock()
	for len(keys[bits]) <= i {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		keys[bits] = append(keys[bits], k)
	}
	return keys[bits][i]
}

// csrPEM builds a PEM CSR as cert-manager would: subject, SANs, key usages.
func csrPEM(t *testing.T, tmpl scep.CSRTemplate, key crypto.Signer) []byte {
	t.Helper()
	if tmpl.KeyUsage == 0 {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	der, err := scep.NewCSR(tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// request creates a CertificateRequest for issuer ref with the given CSR.
// Annotated with cert-manager.io/certificate-name, it is made as
// cert-manager makes one: controller-owned by that Certificate (its UID
// when it exists; a made-up one otherwise, as no garbage collector runs).
func request(t *testing.T, ns, name string, ref cmmeta.IssuerReference, csr []byte, annotations map[string]string) *cmapi.CertificateRequest {
	t.Helper()
	pastLeadSecond(t)
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations, OwnerReferences: ownedBy(t, ns, annotations[cmapi.CertificateNameKey])},
		Spec: cmapi.CertificateRequestSpec{
			IssuerRef: ref,
			Request:   csr,
			Usages:    []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment},
		},
	}
	if err := apiServer(t).Client.Create(t.Context(), cr); err != nil {
		t.Fatal(err)
	}
	return cr
}

// setApproval approves or denies cr as cert-manager's approver does.
func setApproval(t *testing.T, cr *cmapi.CertificateRequest, approved bool) {
	t.Helper()
	c := apiServer(t).Client
	cond := cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue, Reason: "test", Message: "approved by the test"}
	if !approved {
		cond = cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionDenied, Status: cmmeta.ConditionTrue, Reason: "test", Message: "denied by the test"}
	}
	now := metav1.Now()
	cond.LastTransitionTime = &now
	eventuallyNoConflict(t, func() error {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(cr), cr); err != nil {
			return err
		}
		cr.Status.Conditions = append(cr.Status.Conditions, cond)
		return c.Status().Update(t.Context(), cr)
	})
}

func eventuallyNoConflict(t *testing.T, f func() error) {
	t.Helper()
	var err error
	for i := 0; i < 20; i++ {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal(err)
}

// crCondition returns the request's condition of type ct.
func crCondition(cr *cmapi.CertificateRequest, ct cmapi.CertificateRequestConditionType) *cmapi.CertificateRequestCondition {
	for i := range cr.Status.Conditions {
		if cr.Status.Conditions[i].Type == ct {
			return &cr.Status.Conditions[i]
		}
	}
	return nil
}

// waitRequest waits until cr is issued (Ready True) or failed (Ready False,
// reason Failed) and returns it.
func waitRequest(t *testing.T, cr *cmapi.CertificateRequest, timeout time.Duration) *cmapi.CertificateRequest {
	t.Helper()
	got := &cmapi.CertificateRequest{}
	eventually(t, timeout, "CertificateRequest "+cr.Name+" to finish", func() (bool, string) {
		if err := apiServer(t).Client.Get(t.Context(), client.ObjectKeyFromObject(cr), got); err != nil {
			return false, err.Error()
		}
		c := crCondition(got, cmapi.CertificateRequestConditionReady)
		if c == nil {
			return false, "no Ready condition"
		}
		done := c.Status == cmmeta.ConditionTrue || c.Reason == cmapi.CertificateRequestReasonFailed
		return done, fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
	})
	return got
}

// issued asserts cr was issued with a certificate for its CSR's key that
// chains to roots, and returns the leaf.
func issued(t *testing.T, cr *cmapi.CertificateRequest, roots ...*x509.Certificate) *x509.Certificate {
	t.Helper()
	c := crCondition(cr, cmapi.CertificateRequestConditionReady)
	if c == nil || c.Status != cmmeta.ConditionTrue {
		t.Fatalf("request %s not issued: %+v", cr.Name, c)
	}
	var chain []*x509.Certificate
	rest := cr.Status.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		x, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, x)
	}
	if len(chain) == 0 {
		t.Fatalf("request %s has no certificate", cr.Name)
	}
	block, _ := pem.Decode(cr.Spec.Request)
	csr, _ := x509.ParseCertificateRequest(block.Bytes)
	if !chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
		t.Fatalf("issued certificate does not hold the CSR's key")
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	for _, x := range chain[1:] {
		inter.AddCert(x)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("issued certificate does not verify against the CA: %v", err)
	}
	if len(cr.Status.CA) == 0 {
		t.Errorf("status.ca is empty")
	}
	return chain[0]
}

// waitProfile waits until the profile's Ready condition has status want
// (for the current generation) and returns the condition.
func waitProfile(t *testing.T, p scepv1alpha1.Profile, want metav1.ConditionStatus, timeout time.Duration) *metav1.Condition {
	t.Helper()
	var cond *metav1.Condition
	eventually(t, timeout, "profile "+p.GetName()+" Ready="+string(want), func() (bool, string) {
		if err := apiServer(t).Client.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
			return false, err.Error()
		}
		cond = meta.FindStatusCondition(p.GetStatus().Conditions, "Ready")
		if cond == nil {
			return false, "no Ready condition"
		}
		return cond.Status == want && cond.ObservedGeneration == p.GetGeneration(), fmt.Sprintf("Ready=%s %s: %s", cond.Status, cond.Reason, cond.Message)
	})
	return cond
}

// refTo is an issuerRef naming p.
func refTo(p scepv1alpha1.Profile) cmmeta.IssuerReference {
	kind := "SCEPProfile"
	if p.GetNamespace() == "" {
		kind = "ClusterSCEPProfile"
	}
	return cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: kind, Name: p.GetName()}
}

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// ownedBy is the controller ownerReference cert-manager puts on a request
// of Certificate ns/name (none for an empty name).
func ownedBy(t *testing.T, ns, name string) []metav1.OwnerReference {
	t.Helper()
	if name == "" {
		return nil
	}
	uid := types.UID("no-such-certificate-" + name)
	var cert cmapi.Certificate
	if err := apiServer(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &cert); err == nil {
		uid = cert.UID
	}
	return []metav1.OwnerReference{*metav1.NewControllerRef(&metav1.ObjectMeta{Name: name, UID: uid}, cmapi.SchemeGroupVersion.WithKind("Certificate"))}
}

// txOf is the transactionID the signer uses for cr.
func txOf(t *testing.T, cr *cmapi.CertificateRequest) string {
	t.Helper()
	tx, err := signer.TransactionIDOf(cr)
	if err != nil {
		t.Fatal(err)
	}
	return string(tx)
}

// stateOf is the signer's state on cr, as a person would read it.
func stateOf(cr *cmapi.CertificateRequest) signer.State {
	st, _ := signer.StateOf(cr)
	return st
}

// askCheck asks the profile controller to check p now (it watches
// annotations), without waiting for the check.
func askCheck(t *testing.T, p scepv1alpha1.Profile) {
	t.Helper()
	c := apiServer(t).Client
	// A merge patch of the annotation alone: it leaves the generation, and
	// so the Ready condition issuer-lib reads, as they are.
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"test.scep.certificates.dev/recheck":%q}}}`, time.Now().Format(time.RFC3339Nano))
	if err := c.Patch(t.Context(), p, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
}

// recheck makes the profile controller check p now (it watches
// annotations) and waits for a check that began after the call.
//
// One new lastCheckTime is not enough: a check already under way when the
// annotation changed (the one after the profile became Ready, say) can
// finish after it, with what the server served before. The controller
// checks a profile once at a time, so a second check, asked for once the
// first is seen, began after the call.
func recheck(t *testing.T, p scepv1alpha1.Profile) {
	t.Helper()
	c := apiServer(t).Client
	for range 2 {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
			t.Fatal(err)
		}
		var last time.Time
		if lc := p.GetStatus().LastCheckTime; lc != nil {
			last = lc.Time
			// lastCheckTime has a resolution of one second: check in the
			// next one, so that the new check is told apart.
			time.Sleep(time.Until(last.Add(time.Second)))
		}
		askCheck(t, p)
		eventually(t, 30*time.Second, "another check of "+p.GetName(), func() (bool, string) {
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
				return false, err.Error()
			}
			lc := p.GetStatus().LastCheckTime
			return lc != nil && lc.After(last), "no new check yet"
		})
	}
}
