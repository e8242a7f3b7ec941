package scep

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/url"
	"testing"

	"github.com/smallstep/scep/x509util"
)

// TestNewCSRMatchesX509util: the one-pass request with a challenge is what
// smallstep's x509util (sign, add the attribute, sign again) writes, byte
// for byte; RSA PKCS #1 v1.5 signatures are deterministic, so the whole DER
// compares.
func TestNewCSRMatchesX509util(t *testing.T) {
	key := testKey(t, 0)
	u, _ := url.Parse("spiffe://cluster.local/ns/a/sa/b")
	templates := map[string]CSRTemplate{
		"subject only": {Subject: pkix.Name{CommonName: "device-1", Organization: []string{"Corp"}}, ChallengePassword: "secret"},
		"empty subject, SANs of every type": {DNSNames: []string{"a.example"}, EmailAddresses: []string{"a@example.com"}, URIs: []*url.URL{u},
			IPAddresses: []net.IP{net.ParseIP("192.0.2.1")}, UPNs: []string{"user@corp.example"}, KeyUsage: x509.KeyUsageDigitalSignature, ChallengePassword: "secret"},
		"raw subject, copied extensions": {RawSubject: mustMarshalName(t, pkix.Name{CommonName: "raw"}),
			Extensions: []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: []byte{3, 2, 5, 160}}}, ChallengePassword: "a challenge with spaces & UTF-8: é"},
	}
	for name, tmpl := range templates {
		t.Run(name, func(t *testing.T) {
			got, err := NewCSR(tmpl, key)
			if err != nil {
				t.Fatal(err)
			}
			want := viaX509util(t, tmpl, key)
			if !bytes.Equal(got, want) {
				t.Fatalf("NewCSR differs from x509util's encoding:\n got %x\nwant %x", got, want)
			}
		})
	}
}

// TestNewCSRWithChallengeOtherKeys: ECDSA and Ed25519 keys (which sign
// non-deterministically or have no hash) give a valid request carrying the
// challenge and the extensions.
func TestNewCSRWithChallengeOtherKeys(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, key := range map[string]crypto.Signer{"P-256": p256, "P-384": p384, "Ed25519": ed} {
		t.Run(name, func(t *testing.T) {
			der, err := NewCSR(CSRTemplate{Subject: pkix.Name{CommonName: "x"}, DNSNames: []string{"x.example"}, ChallengePassword: "pw"}, key)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := csr.CheckSignature(); err != nil {
				t.Errorf("signature: %v", err)
			}
			if pw, err := ChallengePassword(der); err != nil || pw != "pw" {
				t.Errorf("challenge = %q, %v", pw, err)
			}
			if len(csr.DNSNames) != 1 || csr.DNSNames[0] != "x.example" || csr.Subject.CommonName != "x" {
				t.Errorf("request names %v, subject %v", csr.DNSNames, csr.Subject)
			}
		})
	}
}

func viaX509util(t *testing.T, tmpl CSRTemplate, key crypto.Signer) []byte {
	t.Helper()
	// The same extensions NewCSR builds, through the old path.
	plain := tmpl
	plain.ChallengePassword = ""
	der, err := NewCSR(plain, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	req := x509util.CertificateRequest{ChallengePassword: tmpl.ChallengePassword}
	req.RawSubject = csr.RawSubject
	req.ExtraExtensions = csr.Extensions
	want, err := x509util.CreateCertificateRequest(rand.Reader, &req, key)
	if err != nil {
		t.Fatal(err)
	}
	return want
}

func mustMarshalName(t *testing.T, n pkix.Name) []byte {
	t.Helper()
	der, err := asn1.Marshal(n.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	return der
}
