package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// TestCurrentSwitchesWhenTheOldCAExpires: an answer holding the old and the
// new CA uses the new one once the old one expired, and stays as it is while
// both are valid or when none is (the caller then reports the expiry).
func TestCurrentSwitchesWhenTheOldCAExpires(t *testing.T) {
	now := time.Now()
	oldCA := caValidUntil(t, testKey(t, 0), "old CA", now.Add(time.Hour))
	newCA := caValidUntil(t, testKey(t, 1), "new CA", now.Add(48*time.Hour))
	both := NewCACerts([]*x509.Certificate{oldCA, newCA})

	if got := both.Current(now); len(got.Certs) != 2 || got.Issuer() != oldCA {
		t.Fatalf("both valid: %d certificates, issuer %v; want both, the old one first", len(got.Certs), got.Issuer().Subject)
	}
	later := both.Current(now.Add(2 * time.Hour))
	if len(later.Certs) != 1 || later.Issuer() != newCA || len(later.Ignored) != 1 {
		t.Fatalf("old expired: %d certificates, issuer %v; want the new one alone", len(later.Certs), later.Issuer().Subject)
	}
	if r, err := later.Recipient(); err != nil || r != newCA {
		t.Fatalf("old expired: recipient %v, %v; want the new CA", r, err)
	}
	if none := both.Current(now.Add(72 * time.Hour)); len(none.Certs) != 2 {
		t.Fatalf("all expired: %d certificates kept, want 2 (reported as expired by the caller)", len(none.Certs))
	}
}

// TestPinAny: a pin of several keeps what the matching one vouches for.
func TestPinAny(t *testing.T) {
	now := time.Now()
	a := caValidUntil(t, testKey(t, 0), "A", now.Add(time.Hour))
	b := caValidUntil(t, testKey(t, 1), "B", now.Add(time.Hour))
	certs := NewCACerts([]*x509.Certificate{a, b})
	got, err := certs.PinAny(FingerprintOf(b, crypto.SHA256), FingerprintOf(testCert(t, testKey(t, 2), "C", true, x509.KeyUsageCertSign, nil, nil), crypto.MD5))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Certs) != 1 || got.Certs[0].Certificate != b || len(got.Ignored) != 1 {
		t.Fatalf("kept %d, ignored %d; want B alone", len(got.Certs), len(got.Ignored))
	}
	if _, err := certs.PinAny(); err == nil {
		t.Fatal("PinAny with no pin trusted something")
	}
}

func caValidUntil(t *testing.T, key *rsa.PrivateKey, cn string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: notAfter.Add(-72 * time.Hour), NotAfter: notAfter,
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign}
	return createCert(t, tmpl, key, nil, nil)
}
