package signer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
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
