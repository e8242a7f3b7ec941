package scep

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// TestNextCACertEndingInWhiteSpace: a GetNextCACert answer is DER, and its
// last byte (the signature's) is white space in about 1 answer of 43; it
// was trimmed before parsing and refused ("a length of 2241 bytes where
// 2240 remain", a clean-clone CI run of TestGetNextCACert). Such an
// answer, and one a server ended with a newline, are both taken.
func TestNextCACertEndingInWhiteSpace(t *testing.T) {
	now := time.Now()
	caKey := testKey(t, 0)
	ca := caValidUntil(t, caKey, "Current CA", now.Add(time.Hour))
	current := NewCACerts([]*x509.Certificate{ca})
	var answer []byte
	// Each answer holds a fresh next CA (a random serial), so each
	// signature differs; 5,000 tries all missing has odds below 1e-50.
	for i := 0; i < 5000 && answer == nil; i++ {
		next := caValidUntil(t, testKey(t, 1), "Next CA", now.Add(48*time.Hour))
		der := nextCAAnswer(t, next, ca, caKey)
		if bytes.ContainsAny(der[len(der)-1:], " \t\n\v\f\r") {
			answer = der
		}
	}
	if answer == nil {
		t.Fatal("no answer ending in a white-space byte in 5,000")
	}
	for name, body := range map[string][]byte{"as signed": answer, "with a newline after it": append(append([]byte{}, answer...), '\r', '\n')} {
		got, err := ParseNextCACert(body, current)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got.Certs) != 1 || got.Certs[0].Subject.CommonName != "Next CA" {
			t.Errorf("%s: got %d certificates, want the next CA", name, len(got.Certs))
		}
	}
}

// nextCAAnswer is a GetNextCACert answer as RFC 8894 section 4.7.1 has it:
// next in a degenerate SignedData, wrapped in a SignedData signed by signer.
func nextCAAnswer(t *testing.T, next, signer *x509.Certificate, key *rsa.PrivateKey) []byte {
	t.Helper()
	deg, err := pkcs7.DegenerateCertificate(next.Raw)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := pkcs7.NewSignedData(deg)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(signer, key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

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
