package controllers_test

import (
	"crypto"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/refusing"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// faultFront sits in front of a scepserver: it counts PKIOperations (and
// when they arrived) and, with drop set, hijacks and closes their
// connections without an answer, as a server that went down (or a load
// balancer with no backend) would. The first cutAfterSend PKIOperations
// reach the server, which acts on them, and their answers are lost the
// same way.
type faultFront struct {
	next         http.Handler
	drop         bool
	cutAfterSend int64
	pki          atomic.Int64

	mu    sync.Mutex
	times []time.Time
}

func (f *faultFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("operation") == scepserver.OpPKIOperation {
		n := f.pki.Add(1)
		f.mu.Lock()
		f.times = append(f.times, time.Now())
		f.mu.Unlock()
		cut := n <= f.cutAfterSend
		if cut {
			f.next.ServeHTTP(httptest.NewRecorder(), r)
		}
		if f.drop || cut {
			hj, ok := w.(http.Hijacker)
			if !ok {
				http.Error(w, "cannot hijack", http.StatusInternalServerError)
				return
			}
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
	}
	f.next.ServeHTTP(w, r)
}

// minGap is the shortest time between two PKIOperations.
func (f *faultFront) minGap() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	gap := time.Duration(-1)
	for i := 1; i < len(f.times); i++ {
		if d := f.times[i].Sub(f.times[i-1]); gap < 0 || d < gap {
			gap = d
		}
	}
	return gap
}

// faultCase is one row of the fault matrix.
type faultCase struct {
	name     string
	behavior scepserver.Behavior
	drop     bool // close PKIOperation connections at the front server
	// cutAfterSend: the first so many PKIOperations reach the server,
	// their answers do not reach the operator.
	cutAfterSend int64
	issued       bool // the request ends issued; otherwise Failed
	// contains are substrings the Ready message must hold (case-insensitive).
	contains []string
	// omits are substrings it must not hold: the server's own words.
	omits []string
	// pkiOps is how many PKIOperations must reach the front server; with
	// pkiOpsMax, the least of a range.
	pkiOps, pkiOpsMax int
	// pkcsReqs is how many PKCSReqs the SCEP server must have seen, when
	// it differs from pkiOps (CertPolls are PKIOperations too).
	pkcsReqs *int
	// minGap is the least time between two PKIOperations.
	minGap time.Duration
	// pendingTimeout, when set, is the profile's.
	pendingTimeout time.Duration
	// afterReady changes the world once the profile is Ready, before the
	// request is made.
	afterReady func(t *testing.T, fc *faultCase)
	// timeout bounds the wait for the request to finish (default 60s).
	timeout time.Duration

	srv       *scepserver.Server
	front     *faultFront
	frontSrv  *httptest.Server
	p         *scepv1alpha1.SCEPProfile
	cr        *cmapi.CertificateRequest
	got       *cmapi.CertificateRequest
	err       string
	took      time.Duration
	unreached bool // the front server was closed: the server saw nothing
}

func failInfo(v int) *int { return &v }

// serverWords are phrases of the test server's HTML error page
// (scepserver's htmlErrorPage).
var serverWords = []string{"Service Unavailable", "Sorry, something went wrong", "temporarily unavailable"}

func count(v int) *int { return &v }

// TestFaultMatrix runs every fault the test SCEP server can produce against
// one manager at once: each case has its own server and profile
// (maxAttempts 3, retryInterval 1s, maxRetryInterval 2s) and one request;
// the manager's HTTP timeout is 2s. Transient faults must fail the request
// after exactly maxAttempts PKCSReqs with the cause in the message; when no
// answer came (connection closed, timeout) each retry first asks with a
// CertPoll whether the server acted on the lost PKCSReq. FAILURE must fail
// the request after exactly one PKCSReq; PENDING forever must end at
// pendingTimeout; a server that fails once and recovers, or whose CA rolled
// over, must issue on the second attempt. The manager must never panic.
func TestFaultMatrix(t *testing.T) {
	parallel(t)
	const maxAttempts = 3
	pki := []string{scepserver.OpPKIOperation}
	transient := func(cause ...string) []string { return append([]string{"failed 3 times"}, cause...) }
	cases := []*faultCase{
		// One PKCSReq, then a CertPoll every retryInterval (1s) until
		// pendingTimeout (1m, the least the API allows). It is the longest
		// case: first in the list, its request is made as soon as its
		// profile is Ready, and the others run during its minute.
		{name: "pending-forever", behavior: scepserver.Behavior{PendingForever: true}, pendingTimeout: time.Minute, timeout: 3 * time.Minute,
			contains: []string{"PENDING", "longer than pendingTimeout"}, pkiOps: 20, pkiOpsMax: 64, pkcsReqs: count(1)},
		// Each retry polls (the lost PKCSReq may have been acted on), and a
		// poll that gets no answer either is retried, never followed by a
		// second PKCSReq: 1 PKCSReq and 2 CertPolls, all closed unanswered.
		{name: "connection-closed", drop: true, contains: transient("EOF"), pkiOps: 3},
		{name: "connection-refused", contains: transient("connection refused"), pkiOps: 0, afterReady: func(t *testing.T, fc *faultCase) {
			// GetCACaps and GetCACert are cached: only PKIOperations meet
			// the closed port. Held, it stays closed: no other listener of
			// a busy test run gets it in the meantime.
			held, err := refusing.Hold(fc.frontSrv.Listener.Addr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = held.Close() })
			fc.frontSrv.Close()
			fc.unreached = true
		}},
		{name: "timeout", behavior: scepserver.Behavior{Delay: 30 * time.Second, FaultOperations: pki}, contains: transient("Client.Timeout"), pkiOps: 3, pkcsReqs: count(1)},
		// The server issues, the answer is lost; the CertPoll's answer is
		// lost too; the next CertPoll brings the certificate. One PKCSReq:
		// the chaos soak once saw a second one sent after the lost poll,
		// and issued again.
		{name: "answers-lost-then-recover", cutAfterSend: 2, issued: true, pkiOps: 3, pkcsReqs: count(1)},
		// The same over GET (a server without POSTPKIOperation, as NDES on
		// Windows Server 2008): Go's transport once sent a GET again by
		// itself when its kept-alive connection closed before the answer.
		{name: "answers-lost-then-recover-get", behavior: scepserver.Behavior{Caps: []string{"AES", "SHA-256"}}, cutAfterSend: 2, issued: true, pkiOps: 3, pkcsReqs: count(1)},
		{name: "http-500", behavior: scepserver.Behavior{Status: http.StatusInternalServerError, FaultOperations: pki}, contains: transient("HTTP 500"), pkiOps: maxAttempts},
		{name: "http-503-retry-after", behavior: scepserver.Behavior{Status: http.StatusServiceUnavailable, RetryAfter: "1", FaultOperations: pki}, contains: transient("503"), pkiOps: maxAttempts},
		// The page is described, never quoted (what a server says reaches
		// no status or Event).
		{name: "html-200", behavior: scepserver.Behavior{HTMLStatus200: true, FaultOperations: pki}, contains: transient("an HTML page of", "text/html", "not a SCEP message"), omits: serverWords, pkiOps: maxAttempts},
		{name: "truncated-der", behavior: scepserver.Behavior{TruncatedDER: true, FaultOperations: pki}, contains: transient("invalid SCEP reply", "PKCS#7"), pkiOps: maxAttempts},
		{name: "garbage", behavior: scepserver.Behavior{Garbage: true, FaultOperations: pki}, contains: transient("not a SCEP message"), pkiOps: maxAttempts},
		{name: "bad-signature", behavior: scepserver.Behavior{BadSignature: true}, contains: transient("signature"), pkiOps: maxAttempts},
		{name: "unsigned", behavior: scepserver.Behavior{Unsigned: true}, contains: transient("not signed"), pkiOps: maxAttempts},
		{name: "wrong-recipient-nonce", behavior: scepserver.Behavior{WrongRecipientNonce: true}, contains: transient("recipientNonce"), pkiOps: maxAttempts},
		{name: "wrong-transaction-id", behavior: scepserver.Behavior{WrongTransactionID: true}, contains: transient("transactionID"), pkiOps: maxAttempts},
		{name: "wrong-message-type", behavior: scepserver.Behavior{WrongMessageType: true}, contains: transient("messageType"), pkiOps: maxAttempts},
		{name: "failure-badAlg", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadAlg)}, contains: []string{"refused", "badAlg"}, pkiOps: 1},
		{name: "failure-badMessageCheck", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadMessageCheck)}, contains: []string{"refused", "badMessageCheck"}, pkiOps: 1},
		{name: "failure-badRequest", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadRequest), FailInfoText: "template not allowed"}, contains: []string{"refused", "badRequest", `the server says "template not allowed"`}, pkiOps: 1},
		// Finding 11: the server's text reaches the request's status cleaned
		// (one line, printable) and capped at 128 bytes.
		{name: "failure-hostile-text", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadRequest), FailInfoText: "line one\r\nline two\x1b[31m " + strings.Repeat("x", 5000)},
			contains: []string{"refused", `the server says "line one line two [31m xxx`}, omits: []string{"\r", "\n", "\x1b", strings.Repeat("x", 130)}, pkiOps: 1},
		{name: "failure-badTime", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadTime)}, contains: []string{"refused", "badTime"}, pkiOps: 1},
		{name: "failure-badCertId", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadCertID)}, contains: []string{"refused", "badCertId"}, pkiOps: 1},
		{name: "503-once-then-recover", behavior: scepserver.Behavior{Status: http.StatusServiceUnavailable, FaultOperations: pki, FaultTimes: 1}, issued: true, pkiOps: 2},
		// Retry-After (2s) longer than the backoff (1s ±10%) is honoured.
		{name: "503-retry-after-longer-than-backoff", behavior: scepserver.Behavior{Status: http.StatusServiceUnavailable, RetryAfter: "2", FaultOperations: pki, FaultTimes: 1}, issued: true, pkiOps: 2, minGap: 1900 * time.Millisecond},
		// The CA is replaced after the operator cached GetCACert: the
		// PKCSReq is encrypted to the old CA, the new one cannot decrypt it
		// and answers FAILURE signed by the new CA, which does not verify;
		// the operator forgets the cached certificates and the retry,
		// encrypted to the new CA, is issued by it.
		{name: "ca-rollover", issued: true, pkiOps: 2, afterReady: func(t *testing.T, fc *faultCase) {
			if _, err := fc.srv.RolloverCA(); err != nil {
				t.Fatal(err)
			}
		}},
	}

	ns := namespace(t)
	// No periodic profile check during the test: on a loaded machine the
	// matrix outlasts the default minute, and the check of the case whose
	// server is closed then made its profile Unreachable, so its request
	// waited for the issuer instead of counting attempts.
	//
	// A profile check is bounded by CheckTimeout, RequestTimeout (2 s here)
	// unless set, and it creates the profile's signer (an RSA key): with 23
	// profiles made at once beside other tests, that took longer than 2 s,
	// and the profile waited a minute for its next check before the matrix
	// could start. Only the PKIOperations are faulted; the checks get time.
	m := startManager(t, func(o *controllers.Options) {
		o.RequestTimeout = 2 * time.Second
		o.CheckTimeout = 30 * time.Second
		o.CheckInterval = time.Hour
	})
	c := apiServer(t).Client
	start := time.Now()

	// Profiles first, so they become Ready while the others are created.
	for _, fc := range cases {
		fc.srv = scepserver.Start(t, fc.behavior)
		fc.front = &faultFront{next: fc.srv, drop: fc.drop, cutAfterSend: fc.cutAfterSend}
		// On a port that Hold can keep taken once it refuses connections.
		l, err := refusing.Listen()
		if err != nil {
			t.Fatal(err)
		}
		fc.frontSrv = httptest.NewUnstartedServer(fc.front)
		_ = fc.frontSrv.Listener.Close()
		fc.frontSrv.Listener = l
		fc.frontSrv.Start()
		t.Cleanup(fc.frontSrv.Close)
		fc.p = &scepv1alpha1.SCEPProfile{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: strings.ToLower(fc.name)},
			Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true,
				URL: fc.frontSrv.URL + "/scep", MaxAttempts: maxAttempts,
				RetryInterval: duration(time.Second), MaxRetryInterval: duration(2 * time.Second),
			},
		}
		if fc.pendingTimeout > 0 {
			fc.p.Spec.PendingTimeout = duration(fc.pendingTimeout)
		}
		if err := c.Create(t.Context(), fc.p); err != nil {
			t.Fatal(err)
		}
	}
	makeRequest := func(i int, fc *faultCase) {
		csr := csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: fc.name}}, rsaKey(2048, i%4))
		fc.cr = request(t, ns, strings.ToLower(fc.name), refTo(fc.p), csr, nil)
	}
	for i, fc := range cases {
		waitProfile(t, fc.p, metav1.ConditionTrue, 2*time.Minute) // a dozen profiles checked at once on a loaded machine
		if fc.afterReady != nil {
			fc.afterReady(t, fc)
		}
		if fc.pendingTimeout > 0 {
			makeRequest(i, fc)
			setApproval(t, fc.cr, true)
		}
	}
	for i, fc := range cases {
		if fc.cr == nil {
			makeRequest(i, fc)
		}
	}
	for _, fc := range cases {
		if fc.pendingTimeout == 0 {
			setApproval(t, fc.cr, true)
		}
	}

	// Wait for all of them concurrently; failures are reported per case.
	var wg sync.WaitGroup
	for _, fc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := fc.timeout
			if timeout == 0 {
				timeout = 60 * time.Second
			}
			fc.got, fc.err = waitFinished(t, c, fc.cr, timeout)
			fc.took = time.Since(start)
		}()
	}
	wg.Wait()
	t.Logf("all %d cases finished in %s", len(cases), time.Since(start).Round(time.Millisecond))

	for _, fc := range cases {
		t.Run(fc.name, func(t *testing.T) {
			if fc.err != "" {
				t.Fatalf("did not finish: %s", fc.err)
			}
			ready := crCondition(fc.got, cmapi.CertificateRequestConditionReady)
			seen := int(fc.front.pki.Load())
			t.Logf("RESULT %s | Ready=%s %s | PKIOperations=%d | after %s | %s", fc.name, ready.Status, ready.Reason, seen, fc.took.Round(100*time.Millisecond), ready.Message)
			if fc.issued {
				issued(t, fc.got, fc.srv.CA)
			} else if ready.Status != cmmeta.ConditionFalse || ready.Reason != cmapi.CertificateRequestReasonFailed {
				t.Errorf("Ready = %s %s, want False Failed: %s", ready.Status, ready.Reason, ready.Message)
			}
			for _, s := range fc.contains {
				if !strings.Contains(strings.ToLower(ready.Message), strings.ToLower(s)) {
					t.Errorf("Ready message lacks %q: %s", s, ready.Message)
				}
			}
			for _, s := range fc.omits {
				if strings.Contains(ready.Message, s) {
					t.Errorf("Ready message repeats the server's %q: %s", s, ready.Message)
				}
			}
			// issuer-lib prefixes the message once; re-wrapping an already
			// Failed request's message must not add a second prefix.
			if strings.Count(ready.Message, "Failed permanently") > 1 {
				t.Errorf("Ready message is wrapped twice: %s", ready.Message)
			}
			switch {
			case fc.pkiOpsMax == 0 && seen != fc.pkiOps:
				t.Errorf("server saw %d PKIOperations, want exactly %d", seen, fc.pkiOps)
			case fc.pkiOpsMax > 0 && (seen < fc.pkiOps || seen > fc.pkiOpsMax):
				t.Errorf("server saw %d PKIOperations, want %d to %d", seen, fc.pkiOps, fc.pkiOpsMax)
			}
			if !fc.drop && !fc.unreached && fc.srv.Requests(scepserver.OpPKIOperation) != seen {
				t.Errorf("front counted %d PKIOperations, server %d", seen, fc.srv.Requests(scepserver.OpPKIOperation))
			}
			wantPKCSReq := seen
			if fc.pkcsReqs != nil {
				wantPKCSReq = *fc.pkcsReqs
			}
			if got := fc.srv.PKIMessages("PKCSReq"); !fc.drop && got != wantPKCSReq {
				t.Errorf("server saw %d PKCSReqs, want %d", got, wantPKCSReq)
			}
			if fc.minGap > 0 {
				if gap := fc.front.minGap(); gap < fc.minGap {
					t.Errorf("PKIOperations %s apart, want at least %s", gap, fc.minGap)
				}
			}
		})
	}

	if logs := m.logs(); strings.Contains(strings.ToLower(logs), "panic") {
		i := strings.Index(strings.ToLower(logs), "panic")
		t.Errorf("the manager's logs mention a panic: %s", logs[max(0, i-200):min(len(logs), i+800)])
	}
}

// waitFinished is waitRequest without t.Fatal, so it can run in a goroutine:
// it returns the request once issued or Failed, or why it did not finish.
func waitFinished(t *testing.T, c client.Client, cr *cmapi.CertificateRequest, timeout time.Duration) (*cmapi.CertificateRequest, string) {
	deadline := time.Now().Add(timeout)
	msg := ""
	for time.Now().Before(deadline) {
		got := &cmapi.CertificateRequest{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(cr), got); err != nil {
			msg = err.Error()
		} else if c := crCondition(got, cmapi.CertificateRequestConditionReady); c == nil {
			msg = "no Ready condition"
		} else if c.Status == cmmeta.ConditionTrue || c.Reason == cmapi.CertificateRequestReasonFailed {
			return got, ""
		} else {
			msg = fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Sprintf("timed out after %s: %s", timeout, msg)
}

// TestCARolloverRechecksProfile: when a reply is signed by a CA the cached
// GetCACert did not have, the operator forgets the cached answer and asks
// the profile controller to check the profile again at once, so its status
// shows the rolled-over CA now, not at the next periodic check (an hour
// here).
func TestCARolloverRechecksProfile(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := scepserver.Start(t, scepserver.Behavior{})
	startManager(t, func(o *controllers.Options) { o.CheckInterval = time.Hour })
	c := apiServer(t).Client
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rollover"},
		Spec:       scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL, RetryInterval: duration(time.Second)},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	newCA, err := srv.RolloverCA()
	if err != nil {
		t.Fatal(err)
	}
	cr := request(t, ns, "after-rollover", refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "after-rollover"}}, rsaKey(2048, 0)), nil)
	setApproval(t, cr, true)
	issued(t, waitRequest(t, cr, 60*time.Second), newCA)

	want := scep.FingerprintOf(newCA, crypto.SHA256).Hex()
	eventually(t, 30*time.Second, "the profile's status to show the new CA", func() (bool, string) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
			return false, err.Error()
		}
		var got []string
		for _, ca := range p.Status.CACertificates {
			if ca.SHA256Fingerprint == want {
				return true, ""
			}
			got = append(got, ca.Subject)
		}
		return false, "status shows " + strings.Join(got, ", ")
	})
}
