package stepca

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/scep"
	scepx509 "github.com/smallstep/scep/x509util"
)

// TestStepCASCEP is the harness self-test: step-ca starts, answers GetCACaps
// and GetCACert over HTTPS trusted via Root, issues a certificate for a
// PKCSReq with the right challenge and refuses one with a wrong challenge.
func TestStepCASCEP(t *testing.T) {
	s := Start(t, Options{Challenge: "s3cret", CertDuration: 2 * time.Hour})
	client := s.HTTPClient()

	get := func(op string) (string, []byte) {
		t.Helper()
		resp, err := client.Get(s.URL + "?operation=" + op)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d: %s", op, resp.StatusCode, body)
		}
		return resp.Header.Get("Content-Type"), body
	}

	ct, caps := get("GetCACaps")
	t.Logf("GetCACaps (%s): %q", ct, caps)
	for _, c := range []string{"POSTPKIOperation", "SCEPStandard", "AES", "SHA-256"} {
		if !strings.Contains(string(caps), c) {
			t.Errorf("GetCACaps lacks %s", c)
		}
	}

	ct, body := get("GetCACert")
	if ct != "application/x-x509-ca-ra-cert" {
		t.Errorf("GetCACert content type %q", ct)
	}
	caCerts, err := scep.CACerts(body)
	if err != nil {
		t.Fatalf("GetCACert: %v", err)
	}
	if len(caCerts) != 2 || !caCerts[0].Equal(s.Decrypter) || !caCerts[1].Equal(s.Intermediate) {
		t.Fatalf("GetCACert returned %d certificates, want [decrypter, intermediate]", len(caCerts))
	}

	enroll := func(challenge string) *scep.PKIMessage {
		t.Helper()
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		csrDER, err := scepx509.CreateCertificateRequest(rand.Reader, &scepx509.CertificateRequest{
			CertificateRequest: x509.CertificateRequest{
				Subject:  pkix.Name{CommonName: "stepca-selftest.example"},
				DNSNames: []string{"stepca-selftest.example"},
			},
			ChallengePassword: challenge,
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.ParseCertificateRequest(csrDER)
		if err != nil {
			t.Fatal(err)
		}
		// RFC 8894 signer: a self-signed certificate for the CSR's key.
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      csr.Subject,
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
		}
		signerDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		signer, _ := x509.ParseCertificate(signerDER)

		req, err := scep.NewCSRRequest(csr, &scep.PKIMessage{
			MessageType: scep.PKCSReq,
			Recipients:  caCerts,
			SignerKey:   key,
			SignerCert:  signer,
		}, scep.WithCertsSelector(scep.EnciphermentCertsSelector()))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Post(s.URL+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(req.Raw))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-pki-message" {
			t.Fatalf("PKIOperation: HTTP %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		// WithCACerts: the CertRep must verify against the GetCACert certificates.
		rep, err := scep.ParsePKIMessage(body, scep.WithCACerts(caCerts))
		if err != nil {
			t.Fatalf("parsing CertRep: %v", err)
		}
		if rep.MessageType != scep.CertRep || rep.TransactionID != req.TransactionID {
			t.Fatalf("CertRep: type %q, transaction %q, want %q", rep.MessageType, rep.TransactionID, req.TransactionID)
		}
		if rep.PKIStatus == scep.SUCCESS {
			if err := rep.DecryptPKIEnvelope(signer, key); err != nil {
				t.Fatalf("decrypting CertRep: %v", err)
			}
		}
		return rep
	}

	ok := enroll("s3cret")
	if ok.PKIStatus != scep.SUCCESS {
		t.Fatalf("right challenge: pkiStatus %q failInfo %q, want SUCCESS", ok.PKIStatus, string(ok.FailInfo))
	}
	cert := ok.Certificate
	inter := x509.NewCertPool()
	inter.AddCert(s.Intermediate)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: s.RootPool, Intermediates: inter, DNSName: "stepca-selftest.example"}); err != nil {
		t.Errorf("issued certificate does not verify: %v", err)
	}
	// step-ca backdates NotBefore by a minute.
	if d := cert.NotAfter.Sub(cert.NotBefore); d < 2*time.Hour || d > 2*time.Hour+2*time.Minute {
		t.Errorf("issued certificate lives %v, want the configured 2h", d)
	}
	t.Logf("issued %q, %v to %v, by %q", cert.Subject, cert.NotBefore, cert.NotAfter, cert.Issuer.CommonName)

	bad := enroll("wrong")
	if bad.PKIStatus != scep.FAILURE || bad.FailInfo != scep.BadRequest {
		t.Fatalf("wrong challenge: pkiStatus %q failInfo %q, want FAILURE badRequest", bad.PKIStatus, string(bad.FailInfo))
	}
}
