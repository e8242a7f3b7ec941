package controllers_test

import (
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
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// faultFront sits in front of a scepserver: it counts PKIOperations and,
// with drop set, hijacks and closes their connections without an answer,
// as a server that went down (or a load balancer with no backend) would.
type faultFront struct {
	next http.Handler
	drop bool
	pki  atomic.Int64
}

func (f *faultFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("operation") == scepserver.OpPKIOperation {
		f.pki.Add(1)
		if f.drop {
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

// faultCase is one row of the fault matrix.
type faultCase struct {
	name     string
	behavior scepserver.Behavior
	drop     bool // close PKIOperation connections at the front server
	issued   bool // the request ends issued; otherwise Failed
	// contains are substrings the Ready message must hold (case-insensitive).
	contains []string
	// pkiOps is how many PKIOperations the server must have seen.
	pkiOps int

	srv   *scepserver.Server
	front *faultFront
	p     *scepv1alpha1.SCEPProfile
	cr    *cmapi.CertificateRequest
	got   *cmapi.CertificateRequest
	err   string
	took  time.Duration
}

func failInfo(v int) *int { return &v }

// TestFaultMatrix runs every fault the test SCEP server can produce against
// one manager at once: each case has its own server and profile
// (maxAttempts 3, retryInterval 1s, maxRetryInterval 2s) and one request.
// Transient faults must fail the request after exactly maxAttempts
// PKIOperations with the cause in the message; FAILURE must fail it after
// exactly one; a server that fails once and recovers must issue on the
// second attempt. The manager must never panic.
func TestFaultMatrix(t *testing.T) {
	const maxAttempts = 3
	pki := []string{scepserver.OpPKIOperation}
	transient := func(cause ...string) []string { return append([]string{"failed 3 times"}, cause...) }
	cases := []*faultCase{
		{name: "connection-closed", drop: true, contains: transient("EOF"), pkiOps: maxAttempts},
		{name: "http-500", behavior: scepserver.Behavior{Status: http.StatusInternalServerError, FaultOperations: pki}, contains: transient("500"), pkiOps: maxAttempts},
		{name: "http-503-retry-after", behavior: scepserver.Behavior{Status: http.StatusServiceUnavailable, RetryAfter: "1", FaultOperations: pki}, contains: transient("503"), pkiOps: maxAttempts},
		{name: "html-200", behavior: scepserver.Behavior{HTMLStatus200: true, FaultOperations: pki}, contains: transient("text/html"), pkiOps: maxAttempts},
		{name: "truncated-der", behavior: scepserver.Behavior{TruncatedDER: true, FaultOperations: pki}, contains: transient("invalid SCEP reply", "PKCS#7"), pkiOps: maxAttempts},
		{name: "garbage", behavior: scepserver.Behavior{Garbage: true, FaultOperations: pki}, contains: transient("not a SCEP message"), pkiOps: maxAttempts},
		{name: "bad-signature", behavior: scepserver.Behavior{BadSignature: true}, contains: transient("signature"), pkiOps: maxAttempts},
		{name: "unsigned", behavior: scepserver.Behavior{Unsigned: true}, contains: transient("not signed"), pkiOps: maxAttempts},
		{name: "wrong-recipient-nonce", behavior: scepserver.Behavior{WrongRecipientNonce: true}, contains: transient("recipientNonce"), pkiOps: maxAttempts},
		{name: "wrong-transaction-id", behavior: scepserver.Behavior{WrongTransactionID: true}, contains: transient("transactionID"), pkiOps: maxAttempts},
		{name: "wrong-message-type", behavior: scepserver.Behavior{WrongMessageType: true}, contains: transient("messageType"), pkiOps: maxAttempts},
		{name: "failure-badAlg", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadAlg)}, contains: []string{"refused", "badAlg"}, pkiOps: 1},
		{name: "failure-badMessageCheck", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadMessageCheck)}, contains: []string{"refused", "badMessageCheck"}, pkiOps: 1},
		{name: "failure-badRequest", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadRequest), FailInfoText: "template not allowed"}, contains: []string{"refused", "badRequest", "template not allowed"}, pkiOps: 1},
		{name: "failure-badTime", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadTime)}, contains: []string{"refused", "badTime"}, pkiOps: 1},
		{name: "failure-badCertId", behavior: scepserver.Behavior{FailInfo: failInfo(scepserver.BadCertID)}, contains: []string{"refused", "badCertId"}, pkiOps: 1},
		{name: "503-once-then-recover", behavior: scepserver.Behavior{Status: http.StatusServiceUnavailable, FaultOperations: pki, FaultTimes: 1}, issued: true, pkiOps: 2},
	}

	ns := namespace(t)
	m := startManager(t)
	c := apiServer(t).Client
	start := time.Now()

	// Profiles first, so they become Ready while the others are created.
	for _, fc := range cases {
		fc.srv = scepserver.Start(t, fc.behavior)
		fc.front = &faultFront{next: fc.srv, drop: fc.drop}
		front := httptest.NewServer(fc.front)
		t.Cleanup(front.Close)
		fc.p = &scepv1alpha1.SCEPProfile{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: strings.ToLower(fc.name)},
			Spec: scepv1alpha1.SCEPProfileSpec{
				URL: front.URL + "/scep", MaxAttempts: maxAttempts,
				RetryInterval: duration(time.Second), MaxRetryInterval: duration(2 * time.Second),
			},
		}
		if err := c.Create(t.Context(), fc.p); err != nil {
			t.Fatal(err)
		}
	}
	for _, fc := range cases {
		waitProfile(t, fc.p, metav1.ConditionTrue, 30*time.Second)
	}
	for i, fc := range cases {
		csr := csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: fc.name}}, rsaKey(2048, i%4))
		fc.cr = request(t, ns, strings.ToLower(fc.name), refTo(fc.p), csr, nil)
	}
	for _, fc := range cases {
		setApproval(t, fc.cr, true)
	}

	// Wait for all of them concurrently; failures are reported per case.
	var wg sync.WaitGroup
	for _, fc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fc.got, fc.err = waitFinished(t, c, fc.cr, 60*time.Second)
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
			// issuer-lib prefixes the message once; re-wrapping an already
			// Failed request's message must not add a second prefix.
			if strings.Count(ready.Message, "Failed permanently") > 1 {
				t.Errorf("Ready message is wrapped twice: %s", ready.Message)
			}
			if seen != fc.pkiOps {
				t.Errorf("server saw %d PKIOperations, want exactly %d", seen, fc.pkiOps)
			}
			if !fc.drop && fc.srv.Requests(scepserver.OpPKIOperation) != seen {
				t.Errorf("front counted %d PKIOperations, server %d", seen, fc.srv.Requests(scepserver.OpPKIOperation))
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
