package scep

import (
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seeds returns the captured replies under testdata/seeds whose names
// start with prefix: real answers from MicroMDM, step-ca and the NDES-like
// test server.
func seeds(f testing.TB, prefix string) [][]byte {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "seeds", prefix+"*"))
	if err != nil {
		f.Fatal(err)
	}
	if len(paths) == 0 {
		f.Fatalf("no seeds testdata/seeds/%s*", prefix)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzParseCACerts: any GetCACert body yields certificates or an error,
// never a panic, and classification and recipient choice never panic either.
func FuzzParseCACerts(f *testing.F) {
	for _, s := range seeds(f, "cacert-") {
		f.Add(s, "application/x-x509-ca-ra-cert")
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "application/x-x509-ca-cert")
	f.Add([]byte("<html>500</html>"), "text/html")
	// Finding 7: deep nesting, refused before pkcs7 recurses into it.
	f.Add(nestedIndefinite(5000), "application/x-x509-ca-ra-cert")
	f.Add(nestedDefinite(100), "application/x-x509-ca-cert")
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		certs, err := ParseCACerts(body, ct)
		if err != nil {
			if certs != nil {
				t.Fatal("certificates returned with an error")
			}
			return
		}
		if len(certs.Certs) == 0 {
			t.Fatal("no certificates and no error")
		}
		_, _ = certs.Recipient()
		_ = certs.Issuer()
		_, _ = certs.Pin(FingerprintOf(certs.Certs[0].Certificate, 0))
	})
}

// FuzzReadReply: any reply to a PKCSReq is read, verified and decrypted, or
// refused with an error; never a panic, and never a SUCCESS without a
// certificate.
func FuzzReadReply(f *testing.F) {
	for _, s := range seeds(f, "certrep-") {
		f.Add(s)
	}
	caKey := testKey(f, 0)
	ca := testCert(f, caKey, "CA", true, x509.KeyUsageCertSign, nil, nil)
	key := testKey(f, 1)
	csr, err := NewCSR(CSRTemplate{DNSNames: []string{"fuzz.example"}}, key)
	if err != nil {
		f.Fatal(err)
	}
	signer, err := NewSelfSignedSigner(key, nil, 0)
	if err != nil {
		f.Fatal(err)
	}
	msg, err := NewPKCSReq(csr, MessageOptions{Signer: signer, Recipient: ca, Algorithms: Algorithms{Cipher: CipherAES256CBC, Digest: crypto.SHA256}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(msg.Raw)
	f.Add(nestedIndefinite(5000))
	f.Add(nestedDefinite(100))
	f.Fuzz(func(t *testing.T, der []byte) {
		rep, err := msg.ReadReply(der, []*x509.Certificate{ca})
		if err == nil && rep.Status == StatusSuccess && len(rep.Certificates) == 0 {
			t.Fatal("SUCCESS without a certificate")
		}
		if rep, err := ParseCertRep(der); err == nil {
			_ = rep.MessageType.String() + rep.Status.String() + rep.FailInfo.String()
		}
	})
}

// FuzzParseFingerprint: parsing never panics, and what parses prints back
// into something that parses to the same value.
func FuzzParseFingerprint(f *testing.F) {
	f.Add("sha256:AB:CD")
	f.Add("3b6c8a1e 0f2d4c5b 6a7e8f90 1a2b3c4d 5e6f7a8b")
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err != nil {
			return
		}
		again, err := ParseFingerprint(strings.ReplaceAll(fp.Hex(), ":", ""))
		if err != nil || again.Hash != fp.Hash || again.Hex() != fp.Hex() {
			t.Fatalf("%q -> %v -> %v, %v", s, fp, again, err)
		}
	})
}
