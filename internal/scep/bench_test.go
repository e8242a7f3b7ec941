package scep

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"testing"
)

func BenchmarkNewCSRWithChallenge(b *testing.B) {
	key := testKey(b, 0)
	tmpl := CSRTemplate{Subject: pkix.Name{CommonName: "bench"}, DNSNames: []string{"bench.example"}, ChallengePassword: "pw"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewCSR(tmpl, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewPKCSReq(b *testing.B) {
	ca := testCert(b, testKey(b, 0), "CA", true, x509.KeyUsageCertSign, nil, nil)
	key := testKey(b, 1)
	csr, err := NewCSR(CSRTemplate{DNSNames: []string{"bench.example"}}, key)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := NewSelfSignedSigner(key, nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	opts := MessageOptions{Signer: signer, Recipient: ca, Algorithms: Algorithms{Cipher: CipherAES256CBC, Digest: crypto.SHA256}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewPKCSReq(csr, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCACerts(b *testing.B) {
	body, err := os.ReadFile("testdata/seeds/cacert-ndes-like.der")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCACerts(body, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCertRep(b *testing.B) {
	body, err := os.ReadFile("testdata/seeds/certrep-success-micromdm.der")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCertRep(body); err != nil {
			b.Fatal(err)
		}
	}
}
