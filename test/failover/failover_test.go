// Package failover kills the operator: cmd/manager runs as child processes
// with the chart's flags and RBAC against a real API server and cert-manager's
// controllers, and is stopped with SIGKILL while requests are PENDING, while
// a PKCSReq's answer is on its way, and while it leads with a standby
// replica waiting. The SCEP server (test/scepserver) counts what it is sent:
// no request may be enrolled twice, none lost.
package failover

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/hygiene"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stack"
)

const apps = "apps"

var (
	st         *stack.Stack
	managerBin string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	var err error
	// Two replicas: the chart then turns leader election on and grants the
	// Lease; both tests start the manager with the chart's own arguments.
	st, err = stack.Up(ctx, stack.Options{HelmValues: []string{"replicaCount=2"}, NoOperator: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		return 1
	}
	defer st.Down()
	if managerBin, err = st.BuildManager(ctx, st.WorkDir); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		return 1
	}
	if err := st.Env.CreateNamespace(ctx, apps); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		// Every process's logs, every Event and status: no secret shown.
		r, err := hygiene.Sweep(ctx, st.Client(), processLogs.String())
		switch {
		case err != nil:
			fmt.Fprintln(os.Stderr, "secret hygiene sweep:", err)
			code = 1
		case len(r.Findings) > 0:
			fmt.Fprintln(os.Stderr, "secrets were shown:\n  "+strings.Join(r.Findings, "\n  "))
			code = 1
		default:
			fmt.Println("secret hygiene sweep:", r)
		}
	}
	return code
}

// processLogs collects the logs of every manager process.
var processLogs strings.Builder

// Short leases so a standby takes over within seconds of the leader's death.
var fastLease = []string{
	"--leader-election-lease-duration=4s",
	"--leader-election-renew-deadline=3s",
	"--leader-election-retry-period=500ms",
}

// startManager starts cmd/manager with the chart's arguments plus extra.
func startManager(t *testing.T, name string, extra ...string) *stack.ManagerProcess {
	t.Helper()
	p, err := st.StartManagerProcess(t.Context(), managerBin, name, append(append([]string{}, fastLease...), extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Kill()
		processLogs.WriteString(p.Logs())
		if t.Failed() {
			t.Logf("logs of %s:\n%s", p.Name, p.Logs())
		}
		// A panic, or anything the chart's RBAC forbade (the Lease, an
		// Event), fails the test.
		for _, bad := range []string{"panic", "is forbidden"} {
			if i := strings.Index(p.Logs(), bad); i >= 0 {
				t.Errorf("%s logged %q: %s", p.Name, bad, p.Logs()[max(0, i-300):min(len(p.Logs()), i+300)])
			}
		}
	})
	return p
}

// holdFront passes requests to a SCEP server. The hold-th PKCSReq is served
// (the server issues) but its answer is kept back until Release: an
// operator killed meanwhile never sees it.
type holdFront struct {
	next    *scepserver.Server
	hold    int
	held    chan struct{} // closed when the hold-th PKCSReq was served and kept back
	release chan struct{}
	once    sync.Once

	mu       sync.Mutex
	pkcsReqs int
}

// startHoldFront serves a holdFront for next on a loopback listener and
// returns it with its SCEP URL; the test's end releases and stops it.
func startHoldFront(t *testing.T, next *scepserver.Server, hold int) (*holdFront, string) {
	f := &holdFront{next: next, hold: hold, held: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Cleanup(f.Release) // runs first: a held answer must not block Close
	return f, srv.URL + "/scep"
}

// Release lets the held answer go (to whoever still waits for it).
func (f *holdFront) Release() { f.once.Do(func() { close(f.release) }) }

func (f *holdFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("operation") != scepserver.OpPKIOperation || r.Method != http.MethodPost {
		f.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	f.next.ServeHTTP(rec, r)
	// Which message it was: the server's log says (CertPolls pass through).
	last, _ := f.next.LastPKIRequest()
	hold := false
	if last.MessageType == "PKCSReq" {
		f.mu.Lock()
		f.pkcsReqs++
		hold = f.pkcsReqs == f.hold
		f.mu.Unlock()
	}
	if hold {
		close(f.held)
		<-f.release
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// profile creates a ClusterSCEPProfile (Passthrough: its signer Secret lives
// in the release namespace, where the chart lets the operator write).
func profile(t *testing.T, name, url string) *scepv1alpha1.ClusterSCEPProfile {
	t.Helper()
	p := &scepv1alpha1.ClusterSCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true,
			URL:           url,
			RetryInterval: &metav1.Duration{Duration: time.Second},
		},
	}
	if err := st.Client().Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// certificate creates a Certificate for profile p.
func certificate(t *testing.T, name, profile string) *cmapi.Certificate {
	t.Helper()
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: name},
		Spec: cmapi.CertificateSpec{
			SecretName: name + "-tls",
			CommonName: name + ".apps",
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048},
			IssuerRef:  cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: "ClusterSCEPProfile", Name: profile},
		},
	}
	if err := st.Client().Create(t.Context(), crt); err != nil {
		t.Fatal(err)
	}
	return crt
}

// eventually polls cond every 100ms until it returns true or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, last)
}

// requestsOf returns the CertificateRequests of the named Certificates.
func requestsOf(t *testing.T, names ...string) []cmapi.CertificateRequest {
	t.Helper()
	var list cmapi.CertificateRequestList
	if err := st.Client().List(t.Context(), &list, client.InNamespace(apps)); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []cmapi.CertificateRequest
	for _, cr := range list.Items {
		if want[cr.Annotations[cmapi.CertificateNameKey]] {
			out = append(out, cr)
		}
	}
	return out
}

// waitReady waits until every named Certificate is Ready, and none of
// their requests is in flight, and returns the serial numbers of their
// certificates.
func waitReady(t *testing.T, timeout time.Duration, names ...string) map[string]*big.Int {
	t.Helper()
	serials := map[string]*big.Int{}
	eventually(t, timeout, "Certificates Ready", func() (bool, string) {
		waiting := []string{}
		for _, n := range names {
			crt := &cmapi.Certificate{}
			if err := st.Client().Get(t.Context(), client.ObjectKey{Namespace: apps, Name: n}, crt); err != nil || !stack.IsReady(crt) {
				waiting = append(waiting, n+" ("+stack.ReadyMessage(crt)+")")
				continue
			}
			sec := &corev1.Secret{}
			if err := st.Client().Get(t.Context(), client.ObjectKey{Namespace: apps, Name: crt.Spec.SecretName}, sec); err != nil {
				waiting = append(waiting, n+": "+err.Error())
				continue
			}
			block, _ := pem.Decode(sec.Data[corev1.TLSCertKey])
			if block == nil {
				waiting = append(waiting, n+": no tls.crt")
				continue
			}
			leaf, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			serials[n] = leaf.SerialNumber
		}
		// A revision cert-manager makes just after the last one was issued
		// (seen in TestHelmInstall) is waited for too, so that the counts
		// that follow see it finished.
		if inFlight := stack.Unfinished(requestsOf(t, names...)); len(inFlight) > 0 {
			waiting = append(waiting, "requests in flight: "+strings.Join(inFlight, ", "))
		}
		return len(waiting) == 0, strings.Join(waiting, "; ")
	})
	return serials
}

// issuedSerials returns the serials a server issued, as a set.
func issuedSerials(srv *scepserver.Server) map[string]bool {
	out := map[string]bool{}
	for _, c := range srv.Issued() {
		out[c.SerialNumber.String()] = true
	}
	return out
}

// TestKillDuringEnrollment: SIGKILL while three requests are PENDING at the
// CA and while a fourth's PKCSReq has been served but its answer not
// received. A new process must finish all four from the transactions
// persisted on the requests: CertPoll for the pending ones (now approved),
// CertPoll for the one whose answer was lost; the server sees one PKCSReq
// per request and issues one certificate each.
func TestKillDuringEnrollment(t *testing.T) {
	seen, err := stack.WatchRequests(t.Context(), st.Env.Config, apps)
	if err != nil {
		t.Fatal(err)
	}
	pendingSrv := scepserver.Start(t, scepserver.Behavior{PendingForever: true})
	lostSrv := scepserver.Start(t, scepserver.Behavior{})
	front, frontURL := startHoldFront(t, lostSrv, 1)
	profile(t, "kill-pending", pendingSrv.URL)
	profile(t, "kill-lost", frontURL)

	first := startManager(t, "manager-1")
	pending := []string{"pending-a", "pending-b", "pending-c"}
	for _, n := range pending {
		certificate(t, n, "kill-pending")
	}
	certificate(t, "lost", "kill-lost")

	eventually(t, 90*time.Second, "three PENDING transactions and a PKCSReq served without its answer", func() (bool, string) {
		n := 0
		for _, cr := range requestsOf(t, pending...) {
			if st, _ := signer.StateOf(&cr); st.Pending {
				n++
			}
		}
		select {
		case <-front.held:
			return n == 3, fmt.Sprintf("%d of 3 PENDING", n)
		default:
			return false, fmt.Sprintf("%d of 3 PENDING; the PKCSReq not yet held", n)
		}
	})
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s killed with SIGKILL while 3 requests were PENDING and one answer was in flight", first.Name)
	front.Release() // the answer goes to a dead connection
	for _, tx := range pendingSrv.PendingTransactions() {
		if err := pendingSrv.Approve(tx); err != nil {
			t.Fatal(err)
		}
	}

	second := startManager(t, "manager-2")
	serials := waitReady(t, 90*time.Second, append(pending, "lost")...)
	t.Logf("%s finished all four", second.Name)

	// One PKCSReq per transaction, and per request the namespace held: on a
	// loaded machine cert-manager once made a second revision of one of
	// these Certificates (seen as pending-c-2), which was enrolled once too.
	seen.ReportExactlyOnce(t, "the PENDING server", pendingSrv.PKCSReqTransactions(), requestsOf(t, pending...))
	if got := lostSrv.PKCSReqs(); got != 1 {
		t.Errorf("the server whose answer was lost saw %d PKCSReqs, want 1 (the restart must ask with CertPoll, not enroll again)", got)
	}
	if got := lostSrv.PKIMessages("CertPoll"); got < 1 {
		t.Errorf("the server whose answer was lost saw no CertPoll")
	}
	if got := len(lostSrv.Issued()); got != 1 {
		t.Errorf("the server whose answer was lost issued %d certificates, want 1", got)
	}
	for n, serial := range serials {
		srv := pendingSrv
		if n == "lost" {
			srv = lostSrv
		}
		if !issuedSerials(srv)[serial.String()] {
			t.Errorf("%s holds serial %s, which its server did not issue", n, serial)
		}
	}
	if n := len(requestsOf(t, append(pending, "lost")...)); n != 4 {
		t.Logf("cert-manager made %d CertificateRequests for 4 Certificates", n)
	}
}

// leaderOf waits until exactly one of the processes says it leads.
func leaderOf(t *testing.T, procs ...*stack.ManagerProcess) (leader *stack.ManagerProcess, others []*stack.ManagerProcess) {
	t.Helper()
	eventually(t, 60*time.Second, "a leader", func() (bool, string) {
		leader, others = nil, nil
		for _, p := range procs {
			if exited, _ := p.Exited(); !exited && strings.Contains(p.Logs(), "Successfully acquired lease") {
				if leader != nil {
					t.Fatalf("%s and %s both lead", leader.Name, p.Name)
				}
				leader = p
			} else {
				others = append(others, p)
			}
		}
		if leader == nil {
			state := []string{}
			for _, p := range procs {
				exited, err := p.Exited()
				state = append(state, fmt.Sprintf("%s exited=%v %v logs=%d bytes", p.Name, exited, err, len(p.Logs())))
			}
			return false, "none has acquired the lease: " + strings.Join(state, ", ")
		}
		return true, ""
	})
	return leader, others
}

// TestLeaderHandover: two replicas with leader election. Only the leader
// enrolls. It is killed with SIGKILL while a PKCSReq's answer is in flight;
// the standby takes over when the Lease expires, finishes the work (asking
// about the lost answer with CertPoll) and takes new work. Every
// Certificate is issued exactly once: as many PKCSReqs, transactions and
// issued certificates as requests.
func TestLeaderHandover(t *testing.T) {
	seen, err := stack.WatchRequests(t.Context(), st.Env.Config, apps)
	if err != nil {
		t.Fatal(err)
	}
	srv := scepserver.Start(t, scepserver.Behavior{})
	front, frontURL := startHoldFront(t, srv, 4) // the 4th PKCSReq's answer is kept back
	profile(t, "ha", frontURL)

	a := startManager(t, "replica-a")
	b := startManager(t, "replica-b")
	leader, standby := leaderOf(t, a, b)
	t.Logf("%s leads", leader.Name)

	var before []string
	for i := range 10 {
		n := fmt.Sprintf("ha-%02d", i)
		before = append(before, n)
		certificate(t, n, "ha")
	}
	select {
	case <-front.held:
	case <-time.After(90 * time.Second):
		t.Fatal("the 4th PKCSReq never came")
	}
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	front.Release()
	t.Logf("%s killed with SIGKILL with a PKCSReq's answer in flight", leader.Name)

	next, _ := leaderOf(t, standby...)
	t.Logf("%s took over %s after the kill", next.Name, time.Since(killedAt).Round(100*time.Millisecond))
	waitReady(t, 90*time.Second, before...)

	var after []string
	for i := range 5 {
		n := fmt.Sprintf("ha-after-%02d", i)
		after = append(after, n)
		certificate(t, n, "ha")
	}
	serials := waitReady(t, 90*time.Second, append(before, after...)...)

	all := append(before, after...)
	requests := requestsOf(t, all...)
	// Exactly once is per CertificateRequest. On a loaded machine
	// cert-manager has once made a second revision of a Certificate whose
	// first was issued (seen as ha-after-02-2); that is its choice, and
	// each revision must then be enrolled once, none failed.
	if len(requests) != len(all) {
		t.Logf("cert-manager made %d CertificateRequests for %d Certificates", len(requests), len(all))
	}
	sent := srv.PKCSReqTransactions()
	for i := range requests {
		if cr := &requests[i]; !issuedRequest(cr) {
			t.Errorf("CertificateRequest %s is not issued: %+v", cr.Name, cr.Status.Conditions)
		}
	}
	// A transaction is derived from a request's UID and key: the log of
	// every request the namespace held tells a revision cert-manager
	// replaced and deleted (seen once as ha-06-1 and ha-06-2, both
	// enrolled once) from a transaction the operator made up or resent.
	seen.ReportExactlyOnce(t, "the SCEP server", sent, requests)
	if got := len(srv.Issued()); got != len(sent) {
		t.Errorf("the server issued %d certificates in %d transactions", got, len(sent))
	}
	issued := issuedSerials(srv)
	for n, s := range serials {
		if !issued[s.String()] {
			t.Errorf("%s holds serial %s, which the server did not issue", n, s)
		}
	}
	// The standby did nothing while it waited.
	logs := next.Logs()
	if i, j := strings.Index(logs, "Successfully acquired lease"), strings.Index(logs, "certificate issued"); j >= 0 && j < i {
		t.Errorf("%s issued before it led", next.Name)
	}
}

// issuedRequest says whether cr is Ready with a certificate.
func issuedRequest(cr *cmapi.CertificateRequest) bool {
	for _, c := range cr.Status.Conditions {
		if c.Type == cmapi.CertificateRequestConditionReady {
			return c.Status == cmmeta.ConditionTrue && len(cr.Status.Certificate) > 0
		}
	}
	return false
}
