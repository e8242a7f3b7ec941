package signer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scep-operator/scep-operator/internal/profiles"
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

func TestStateRoundTrip(t *testing.T) {
	cert, _ := selfSigned(t, "signer", nil, nil)
	now := time.Date(2026, 11, 25, 5, 0, 0, 123, time.UTC)
	st := state{TransactionID: "abc", SignerCert: cert, Phase: StatePending, FailedAttempts: 2, NextAttempt: now, PendingSince: now.Add(-time.Hour), LastError: "HTTP 503"}
	cr := &cmapi.CertificateRequest{}
	st.write(cr)
	got := readState(cr)
	if got.TransactionID != st.TransactionID || !got.SignerCert.Equal(cert) || got.Phase != st.Phase || got.FailedAttempts != 2 ||
		!got.NextAttempt.Equal(now) || !got.PendingSince.Equal(st.PendingSince) || got.LastError != st.LastError {
		t.Errorf("round trip: %+v", got)
	}
	// Cleared fields leave no annotation behind.
	st.FailedAttempts, st.LastError, st.NextAttempt = 0, "", time.Time{}
	st.write(cr)
	for _, k := range []string{AnnotationFailedAttempts, AnnotationLastError, AnnotationNextAttempt} {
		if _, ok := cr.Annotations[k]; ok {
			t.Errorf("annotation %s left behind", k)
		}
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
// (persist's optimistic lock guards it) but reads a request that carries a
// transaction or looks finished from the API server.
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
		{"transaction in flight", cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationTransactionID: "abc"}}}, true},
		{"issued", cmapi.CertificateRequest{Status: cmapi.CertificateRequestStatus{Conditions: cond(cmmeta.ConditionTrue, cmapi.CertificateRequestReasonIssued)}}, true},
		{"failed", cmapi.CertificateRequest{Status: cmapi.CertificateRequestStatus{Conditions: cond(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonFailed)}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := needsFreshRead(&tc.cr); got != tc.fresh {
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
	(state{TransactionID: "abc", Phase: StateSending}).write(withState)
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
