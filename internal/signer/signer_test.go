package signer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
)

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second}, {5, 10 * time.Second}, {50, 10 * time.Second}} {
		if got := Backoff(time.Second, 10*time.Second, tt.n, nil); got != tt.want {
			t.Errorf("Backoff(n=%d) = %s, want %s", tt.n, got, tt.want)
		}
	}
	// Jitter stays within ±10%.
	lo := Backoff(time.Minute, time.Hour, 1, func() float64 { return 0 })
	hi := Backoff(time.Minute, time.Hour, 1, func() float64 { return 0.999999 })
	if lo != 54*time.Second || hi < 65*time.Second || hi > 66*time.Second {
		t.Errorf("jitter bounds = %s..%s", lo, hi)
	}
}

func selfSigned(t *testing.T, cn string, parent *x509.Certificate, parentKey *rsa.PrivateKey) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: parent == nil, BasicConstraintsValid: true}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// TestStateSeal: the state the signer writes reads back for the same
// request, and nothing else does: a forged, edited, truncated or copied
// value is refused, so that no annotation a tenant writes decides what the
// signer does.
func TestStateSeal(t *testing.T) {
	s := &Signer{StateKey: []byte("0123456789abcdef0123456789abcdef")}
	now := time.Date(2026, 11, 25, 5, 0, 0, 123, time.UTC)
	st := State{Pending: true, FailedAttempts: 2, NextAttempt: now, PendingSince: now.Add(-time.Hour), LastError: "HTTP 503", TransactionID: "AB"}
	cr := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{UID: "uid-1"}}
	s.write(cr, st)
	got, err := s.open(cr)
	if err != nil || got.Pending != st.Pending || got.FailedAttempts != 2 || !got.NextAttempt.Equal(now) ||
		!got.PendingSince.Equal(st.PendingSince) || got.LastError != st.LastError {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if seen, ok := StateOf(cr); !ok || seen.FailedAttempts != 2 {
		t.Errorf("StateOf = %+v, %v", seen, ok)
	}
	sealed := cr.Annotations[AnnotationState]
	payload, mac, _ := strings.Cut(sealed, ".")
	forge := func(p State) string {
		b, _ := json.Marshal(p)
		return base64.RawURLEncoding.EncodeToString(b) + "." + mac
	}
	other := &Signer{StateKey: []byte("another key, another operator!!!")}
	for _, tc := range []struct {
		name, value string
		uid         string
	}{
		{"another request's state (copied)", sealed, "uid-2"},
		{"attempts reset, old MAC", forge(State{FailedAttempts: 0}), "uid-1"},
		{"pending forged, old MAC", forge(State{Pending: true}), "uid-1"},
		{"no MAC", payload, "uid-1"},
		{"empty MAC", payload + ".", "uid-1"},
		{"sealed by another key", other.seal("uid-1", State{Pending: true}), "uid-1"},
		{"not base64", "%%%.%%%", "uid-1"},
		{"too long", strings.Repeat("A", maxStateLength+1) + "." + mac, "uid-1"},
		{"negative attempts, properly sealed", s.seal("uid-1", State{FailedAttempts: -5}), "uid-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{UID: types.UID(tc.uid), Annotations: map[string]string{AnnotationState: tc.value}}}
			if got, err := s.open(cr); err == nil {
				t.Errorf("accepted %+v", got)
			}
		})
	}
	// The legacy annotations of earlier versions are not state.
	legacy := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{UID: "uid-1", Annotations: map[string]string{
		"scep.certificates.dev/transaction-id": "victim", "scep.certificates.dev/failed-attempts": "-100"}}}
	if got, err := s.open(legacy); err != nil || got != (State{}) {
		t.Errorf("legacy annotations read as %+v, %v", got, err)
	}
}

// TestDerivedTransaction: the transactionID and the Rebuild signer
// certificate follow from the request alone (so a restart finds them
// without storage) and differ between requests (so no request can poll
// another's transaction).
func TestDerivedTransaction(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "app"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(uid string) *cmapi.CertificateRequest {
		return &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}, Spec: cmapi.CertificateRequestSpec{Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})}}
	}
	a1, _ := TransactionIDOf(mk("a"))
	a2, _ := TransactionIDOf(mk("a"))
	b, _ := TransactionIDOf(mk("b"))
	if a1 == "" || a1 != a2 || a1 == b || len(a1) != 64 {
		t.Errorf("transactionIDs: %q %q %q", a1, a2, b)
	}
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sg1, err := scep.NewDeterministicSigner(key, nil, scep.SignerCertificateOptions{TransactionID: a1, NotBefore: created})
	if err != nil {
		t.Fatal(err)
	}
	sg2, _ := scep.NewDeterministicSigner(key, nil, scep.SignerCertificateOptions{TransactionID: a1, NotBefore: created})
	sg3, _ := scep.NewDeterministicSigner(key, nil, scep.SignerCertificateOptions{TransactionID: b, NotBefore: created})
	if !sg1.Certificate.Equal(sg2.Certificate) {
		t.Errorf("the same transaction gave two signer certificates")
	}
	if sg1.Certificate.Equal(sg3.Certificate) {
		t.Errorf("two transactions gave the same signer certificate")
	}
	if !sg1.Certificate.NotAfter.After(created.Add(300 * 24 * time.Hour)) {
		t.Errorf("signer certificate valid only until %s", sg1.Certificate.NotAfter)
	}
}

func TestBundleOf(t *testing.T) {
	root, rootKey := selfSigned(t, "root", nil, nil)
	inter, interKey := selfSigned(t, "intermediate", root, rootKey)
	inter.IsCA = true
	leaf, _ := selfSigned(t, "leaf", inter, interKey)
	pemOf := func(cs ...*x509.Certificate) string {
		var s string
		for _, c := range cs {
			s += string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
		}
		return s
	}
	b, err := bundleOf([]*x509.Certificate{leaf, inter, root})
	if err != nil || string(b.ChainPEM) != pemOf(leaf, inter) || string(b.CAPEM) != pemOf(root) {
		t.Errorf("leaf+intermediate+root: chain %d bytes, ca %d bytes, %v", len(b.ChainPEM), len(b.CAPEM), err)
	}
	// Without the root, the last issuer is the best guess at the CA.
	b, _ = bundleOf([]*x509.Certificate{leaf, inter})
	if string(b.ChainPEM) != pemOf(leaf, inter) || string(b.CAPEM) != pemOf(inter) {
		t.Errorf("leaf+intermediate: unexpected bundle")
	}
	if _, err := bundleOf(nil); err == nil {
		t.Errorf("empty chain accepted")
	}
}

// TestNeedsFreshRead: Sign may start a transaction from the cached request
// but reads a request that carries state, that this process acted on, or
// that looks finished from the API server.
func TestNeedsFreshRead(t *testing.T) {
	cond := func(status cmmeta.ConditionStatus, reason string) []cmapi.CertificateRequestCondition {
		return []cmapi.CertificateRequestCondition{{Type: cmapi.CertificateRequestConditionReady, Status: status, Reason: reason}}
	}
	for _, tc := range []struct {
		name  string
		cr    cmapi.CertificateRequest
		fresh bool
	}{
		{"new request", cmapi.CertificateRequest{}, false},
		{"issuer-lib initialising", cmapi.CertificateRequest{Status: cmapi.CertificateRequestStatus{Conditions: cond(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonPending)}}, false},
		{"state written", cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationState: "x.y"}}}, true},
		{"acted on by this process", cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{UID: "touched"}}, true},
		{"issued", cmapi.CertificateRequest{Status: cmapi.CertificateRequestStatus{Conditions: cond(cmmeta.ConditionTrue, cmapi.CertificateRequestReasonIssued)}}, true},
		{"failed", cmapi.CertificateRequest{Status: cmapi.CertificateRequestStatus{Conditions: cond(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonFailed)}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Signer{}
			s.touch("touched")
			if got := s.needsFreshRead(certificateRequest{&tc.cr}); got != tc.fresh {
				t.Errorf("needsFreshRead = %v, want %v", got, tc.fresh)
			}
		})
	}
}

// TestAcquireWithin: a full profile makes the caller wait for a slot, up to
// the limit it was given, instead of failing at once.
func TestAcquireWithin(t *testing.T) {
	s := &Signer{}
	key := profiles.Key{Kind: "SCEPProfile", Namespace: "ns", Name: "p"}
	if !s.acquire(key, 1) {
		t.Fatal("first slot refused")
	}
	if s.acquireWithin(context.Background(), key, 1, 20*time.Millisecond) {
		t.Fatal("a second slot was granted over the limit")
	}
	go func() {
		time.Sleep(30 * time.Millisecond)
		s.release(key)
	}()
	if !s.acquireWithin(context.Background(), key, 1, 5*time.Second) {
		t.Fatal("the slot released meanwhile was not granted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s.acquireWithin(ctx, key, 1, 5*time.Second) {
		t.Fatal("granted a slot over the limit with a cancelled context")
	}
}

// TestOnlyStateChanged: an update that only writes the transaction state
// needs no reconcile; any other change does.
func TestOnlyStateChanged(t *testing.T) {
	base := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Name: "r", ResourceVersion: "1", Annotations: map[string]string{"cert-manager.io/certificate-name": "c"}}}
	withState := base.DeepCopy()
	withState.ResourceVersion = "2"
	(&Signer{}).write(withState, State{FailedAttempts: 1})
	userChange := withState.DeepCopy()
	userChange.Annotations["scep.certificates.dev/email"] = "a@example.com"
	statusChange := withState.DeepCopy()
	statusChange.Status.Conditions = []cmapi.CertificateRequestCondition{{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue}}
	for _, tc := range []struct {
		name          string
		before, after *cmapi.CertificateRequest
		want          bool
	}{
		{"state written", base, withState, true},
		{"no annotation change", base, base, false},
		{"a user's annotation too", base, userChange, false},
		{"status changed too", base, statusChange, false},
		{"nil", nil, withState, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := OnlyStateChanged(tc.before, tc.after); got != tc.want {
				t.Errorf("OnlyStateChanged = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestShortenKeepsUTF8: a shortened error is still valid UTF-8, whatever
// byte the limit falls on.
func TestShortenKeepsUTF8(t *testing.T) {
	s := strings.Repeat("é", 10) // 2 bytes each
	for n := 1; n < len(s); n++ {
		got := shorten(s, n)
		if !utf8.ValidString(got) || len(got) > n+len("…") {
			t.Errorf("shorten(%d) = %q", n, got)
		}
	}
	if got := shorten("short", 10); got != "short" {
		t.Errorf("shorten of a short string = %q", got)
	}
}
