package controllers_test

import (
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// pendingKeyFor creates what cert-manager creates before a request: the
// Certificate, its pending private key Secret, and status.nextPrivateKeySecretName.
func pendingKeyFor(t *testing.T, ns, certName string, ref scepv1alpha1.Profile, key *rsa.PrivateKey) {
	t.Helper()
	c := apiServer(t).Client
	cert := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: certName},
		Spec:       cmapi.CertificateSpec{SecretName: certName + "-tls", IssuerRef: refTo(ref), DNSNames: []string{certName + ".example"}},
	}
	if err := c.Create(t.Context(), cert); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: certName + "-next", Labels: map[string]string{"cert-manager.io/next-private-key": "true"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cert, cmapi.SchemeGroupVersion.WithKind("Certificate"))},
		},
		Data: map[string][]byte{corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})},
	}
	if err := c.Create(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	name := secret.Name
	cert.Status.NextPrivateKeySecretName = &name
	if err := c.Status().Update(t.Context(), cert); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildStaticChallengeMicroMDM: Rebuild mode puts the Static challenge
// into a CSR rebuilt with the workload's pending key; MicroMDM, which checks
// the challenge, issues it.
func TestRebuildStaticChallengeMicroMDM(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := micromdm.Start(t, micromdm.Options{Challenge: "mdm-s3cret"})
	m := startManager(t)
	c := apiServer(t).Client
	if err := c.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scep-challenge"}, Data: map[string][]byte{"password": []byte("mdm-s3cret\n")}}); err != nil {
		t.Fatal(err)
	}
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mdm"},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true,
			URL:       srv.URL,
			CSRMode:   scepv1alpha1.CSRModeRebuild,
			Challenge: scepv1alpha1.Challenge{AllowUnpinnedHTTP: true, Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: "scep-challenge"}},
		},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	if p.Status.SignerSecretName != "" {
		t.Errorf("Rebuild with RSA keys needs no profile signer, got %q", p.Status.SignerSecretName)
	}

	key := rsaKey(2048, 3)
	pendingKeyFor(t, ns, "app", p, key)
	cr := request(t, ns, "app-1", refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "app"}, DNSNames: []string{"app.example"}}, key), map[string]string{cmapi.CertificateNameKey: "app"})
	setApproval(t, cr, true)
	issued(t, waitRequest(t, cr, 30*time.Second), srv.CA)

	// A CSR whose key is not the pending key: refused, nothing sent.
	before := srv.Requests("PKIOperation")
	bad := request(t, ns, "app-2", refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "app"}}, rsaKey(2048, 4)), map[string]string{cmapi.CertificateNameKey: "app"})
	setApproval(t, bad, true)
	bad = waitRequest(t, bad, 30*time.Second)
	if msg := crCondition(bad, cmapi.CertificateRequestConditionReady).Message; !strings.Contains(msg, "does not match") {
		t.Errorf("message = %q", msg)
	}
	if srv.Requests("PKIOperation") != before || bad.Annotations[signer.AnnotationState] != "" {
		t.Errorf("a request with a foreign key was sent")
	}

	// The challenge never reaches logs (at the most verbose level), Events
	// or status.
	if strings.Contains(m.logs(), "mdm-s3cret") {
		t.Errorf("the challenge password appears in the manager's logs")
	}
	var evs eventsv1.EventList
	if err := c.List(t.Context(), &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) == 0 {
		t.Errorf("no Events were recorded")
	}
	for _, e := range evs.Items {
		if strings.Contains(e.Note, "mdm-s3cret") {
			t.Errorf("Event %s/%s carries the challenge", e.Reason, e.Name)
		}
	}
	for _, cr := range []*cmapi.CertificateRequest{cr, bad} {
		_ = c.Get(t.Context(), client.ObjectKeyFromObject(cr), cr)
		for _, cond := range cr.Status.Conditions {
			if strings.Contains(cond.Message, "mdm-s3cret") {
				t.Errorf("condition %s carries the challenge", cond.Type)
			}
		}
	}
}

// TestPendingSurvivesRestart: the server answers PENDING; the transaction is
// on the request; a new manager resumes it with CertPoll; the server saw
// exactly one PKCSReq.
func TestPendingSurvivesRestart(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := scepserver.Start(t, scepserver.Behavior{PendingForever: true})
	m := startManager(t)
	c := apiServer(t).Client
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"},
		Spec:       scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL, RetryInterval: duration(time.Second)},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	cr := request(t, ns, "pending-1", refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "pending"}}, rsaKey(2048, 0)), nil)
	setApproval(t, cr, true)

	var txID string
	eventually(t, 30*time.Second, "the request to be PENDING and polled", func() (bool, string) {
		got := &cmapi.CertificateRequest{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(cr), got); err != nil {
			return false, err.Error()
		}
		txID = txOf(t, got)
		ready := crCondition(got, cmapi.CertificateRequestConditionReady)
		return stateOf(got).Pending && srv.PKIMessages("CertPoll") >= 1 && ready != nil && ready.Reason == cmapi.CertificateRequestReasonPending,
			fmt.Sprintf("state %+v", stateOf(got))
	})
	m.stop()
	polls := srv.PKIMessages("CertPoll")

	// The CA approves while the operator is down; a new operator resumes.
	srv.Set(func(b *scepserver.Behavior) { b.PendingForever = false; b.Pending = 1 })
	startManager(t)
	got := waitRequest(t, cr, 30*time.Second)
	issued(t, got, srv.CA)
	if n := srv.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("server saw %d PKCSReq, want exactly 1", n)
	}
	if srv.PKIMessages("CertPoll") <= polls {
		t.Errorf("the new manager did not poll")
	}
	for _, r := range srv.PKIRequests() {
		if r.TransactionID != txID {
			t.Errorf("%s used transaction %q, want %q", r.MessageType, r.TransactionID, txID)
		}
	}
}

// timedHandler records when each PKIOperation reached the server.
type timedHandler struct {
	next http.Handler
	mu   sync.Mutex
	at   []time.Time
}

func (h *timedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("operation") == "PKIOperation" {
		h.mu.Lock()
		h.at = append(h.at, time.Now())
		h.mu.Unlock()
	}
	h.next.ServeHTTP(w, r)
}

func (h *timedHandler) times() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.at...)
}

// TestServerDownBacksOff: PKIOperation answers 503; attempts are spaced at
// least as the backoff says (1s, then 2s, ±10% jitter) and the request fails
// after maxAttempts, with the count persisted on the request.
func TestServerDownBacksOff(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := scepserver.Start(t, scepserver.Behavior{Status: http.StatusServiceUnavailable, FaultOperations: []string{scepserver.OpPKIOperation}})
	timed := &timedHandler{next: srv}
	front := httptest.NewServer(timed)
	t.Cleanup(front.Close)
	startManager(t)
	c := apiServer(t).Client
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "down"},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true,
			URL: front.URL + "/scep", MaxAttempts: 3,
			RetryInterval: duration(time.Second), MaxRetryInterval: duration(10 * time.Second),
		},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	cr := request(t, ns, "down-1", refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "down"}}, rsaKey(2048, 0)), nil)
	setApproval(t, cr, true)
	got := waitRequest(t, cr, 60*time.Second)
	ready := crCondition(got, cmapi.CertificateRequestConditionReady)
	if ready.Reason != cmapi.CertificateRequestReasonFailed || !strings.Contains(ready.Message, "failed 3 times") || !strings.Contains(ready.Message, "503") {
		t.Fatalf("Ready = %s %s: %s", ready.Status, ready.Reason, ready.Message)
	}
	at := timed.times()
	if len(at) != 3 {
		t.Fatalf("server saw %d PKIOperations, want 3 (maxAttempts)", len(at))
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second} {
		if gap := at[i+1].Sub(at[i]); gap < want*9/10 {
			t.Errorf("attempt %d came %s after the previous one, want at least %s", i+2, gap, want*9/10)
		}
	}
	if n := stateOf(got).FailedAttempts; n != 2 {
		t.Errorf("failed attempts recorded = %d (the third failure fails the request)", n)
	}
}
