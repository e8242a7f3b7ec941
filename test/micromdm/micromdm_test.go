package micromdm

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	scepclient "github.com/micromdm/scep/v2/client"
	"github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"
)

func TestGetCACapsIsMicroMDMs(t *testing.T) {
	s := Start(t, Options{})
	cl, err := scepclient.New(s.URL, nopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	caps, err := cl.GetCACaps(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const want = "Renewal\nSHA-1\nSHA-256\nAES\nDES3\nSCEPStandard\nPOSTPKIOperation"
	if string(caps) != want {
		t.Errorf("GetCACaps = %q, want %q", caps, want)
	}
	if got := s.Requests("GetCACaps"); got != 1 {
		t.Errorf("Requests(GetCACaps) = %d, want 1", got)
	}
}

func TestEnrolWithChallenge(t *testing.T) {
	s := Start(t, Options{Challenge: "secret"})
	for _, tc := range []struct {
		name      string
		challenge string
		want      scep.PKIStatus
	}{
		{"right challenge issues", "secret", scep.SUCCESS},
		{"wrong challenge is refused", "wrong", scep.FAILURE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, key := enrol(t, s.URL, tc.challenge)
			if rep.PKIStatus != tc.want {
				t.Fatalf("pkiStatus = %q, want %q", rep.PKIStatus, tc.want)
			}
			if tc.want == scep.FAILURE {
				if rep.FailInfo != scep.BadRequest {
					t.Errorf("failInfo = %q, want badRequest", rep.FailInfo)
				}
				return
			}
			if err := rep.Certificate.CheckSignatureFrom(s.CA); err != nil {
				t.Errorf("issued certificate not signed by the CA: %v", err)
			}
			if !key.PublicKey.Equal(rep.Certificate.PublicKey) {
				t.Errorf("issued certificate is not for the CSR key")
			}
		})
	}
	if got := s.PKIMessages("PKCSReq"); got != 2 {
		t.Errorf("PKIMessages(PKCSReq) = %d, want 2", got)
	}
}

// enrol runs the PKCSReq exchange the way MicroMDM's scepclient does, with a
// throwaway self-signed signer, and returns the parsed (and, on SUCCESS,
// decrypted) CertRep.
func enrol(t *testing.T, serverURL, challenge string) (*scep.PKIMessage, *rsa.PrivateKey) {
	t.Helper()
	ctx := context.Background()
	cl, err := scepclient.New(serverURL, nopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	der, _, err := cl.GetCACert(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	caCerts, err := x509.ParseCertificates(der)
	if err != nil {
		t.Fatal(err)
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: "device-1"}},
		ChallengePassword:  challenge,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "SCEP SIGNER"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	selfDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	self, err := x509.ParseCertificate(selfDER)
	if err != nil {
		t.Fatal(err)
	}

	msg, err := scep.NewCSRRequest(csr, &scep.PKIMessage{
		MessageType: scep.PKCSReq,
		Recipients:  caCerts,
		SignerKey:   key,
		SignerCert:  self,
	})
	if err != nil {
		t.Fatal(err)
	}
	respDER, err := cl.PKIOperation(ctx, msg.Raw)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := scep.ParsePKIMessage(respDER, scep.WithCACerts(caCerts))
	if err != nil {
		t.Fatal(err)
	}
	if rep.PKIStatus == scep.SUCCESS {
		if err := rep.DecryptPKIEnvelope(self, key); err != nil {
			t.Fatal(err)
		}
	}
	return rep, key
}

type nopLogger struct{}

func (nopLogger) Log(...any) error { return nil }
