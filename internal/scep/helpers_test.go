package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"sync"
	"testing"
	"time"
)

var (
	keyOnce  sync.Once
	testKeys []*rsa.PrivateKey
)

// testKey returns one of a few RSA-2048 keys generated once per test binary,
// since key generation dominates these tests' time otherwise.
func testKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() {
		for n := 0; n < 4; n++ {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testKeys = append(testKeys, k)
		}
	})
	return testKeys[i%len(testKeys)]
}

// testCA makes a certificate for key; parent nil means self-signed.
func testCert(t testing.TB, key *rsa.PrivateKey, cn string, isCA bool, ku x509.KeyUsage, parent *x509.Certificate, parentKey *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              ku,
	}
	return createCert(t, tmpl, key, parent, parentKey)
}

// createCert signs tmpl for key with parent's key; parent nil means
// self-signed.
func createCert(t testing.TB, tmpl *x509.Certificate, key *rsa.PrivateKey, parent *x509.Certificate, parentKey *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// certFromCSR issues a certificate copying the request's extensions, as a
// CA would, so extension encodings can be read back with crypto/x509.
func certFromCSR(t testing.TB, csr *x509.CertificateRequest) *x509.Certificate {
	t.Helper()
	ca := testKey(t, 3)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: csr.Subject, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), ExtraExtensions: csr.Extensions}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, csr.PublicKey, ca)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pkcsReqTo is a PKCSReq for dnsName, encrypted to ca, signed by a
// self-signed certificate of a fresh request key: what a server's reply is
// read against.
func pkcsReqTo(t testing.TB, ca *x509.Certificate, dnsName string) *Message {
	t.Helper()
	key := testKey(t, 1)
	csr, err := NewCSR(CSRTemplate{DNSNames: []string{dnsName}}, key)
	if err != nil {
		t.Fatal(err)
	}
	self, err := NewSelfSignedSigner(key, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := NewPKCSReq(csr, MessageOptions{Signer: self, Recipient: ca, Algorithms: Algorithms{Cipher: CipherAES256CBC, Digest: crypto.SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}
