package scepserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	scepclient "github.com/micromdm/scep/v2/client"
	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"
)

func TestEnrol(t *testing.T) {
	onlyCA := scep.CertsSelectorFunc(func(certs []*x509.Certificate) []*x509.Certificate { return certs[:1] })
	for _, tc := range []struct {
		name     string
		behavior Behavior
		selector scep.CertsSelector
		want     scep.PKIStatus
		wantInfo scep.FailInfo
	}{
		{name: "issues", want: scep.SUCCESS},
		{name: "AES-256-GCM reply", behavior: Behavior{ReplyCipher: pkcs7.OIDEncryptionAlgorithmAES256GCM}, want: scep.SUCCESS},
		{name: "3DES reply", behavior: Behavior{ReplyCipher: pkcs7.OIDEncryptionAlgorithmDESEDE3CBC}, want: scep.SUCCESS},
		{name: "RA split", behavior: Behavior{RASplit: true}, selector: scep.EnciphermentCertsSelector(), want: scep.SUCCESS},
		{name: "RA split refuses envelope to CA", behavior: Behavior{RASplit: true}, selector: onlyCA, want: scep.FAILURE, wantInfo: scep.BadMessageCheck},
		{name: "failInfo badRequest", behavior: Behavior{FailInfo: new(BadRequest), FailInfoText: "not today"}, want: scep.FAILURE, wantInfo: scep.BadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(t, tc.behavior)
			c := newTestClient(t, s, tc.selector)
			rep, raw := c.send(t, c.pkcsReq(t).Raw)
			if rep.PKIStatus != tc.want {
				t.Fatalf("pkiStatus = %q, want %q", rep.PKIStatus, tc.want)
			}
			last, _ := s.LastPKIRequest()
			if last.MessageType != "PKCSReq" || last.Method != "POST" || s.PKIMessages("PKCSReq") != 1 {
				t.Errorf("recorded %s over %s, %d PKCSReq; want one PKCSReq over POST", last.MessageType, last.Method, s.PKIMessages("PKCSReq"))
			}
			if tc.want == scep.FAILURE {
				if rep.FailInfo != tc.wantInfo {
					t.Errorf("failInfo = %q, want %q", rep.FailInfo, tc.wantInfo)
				}
				// A badMessageCheck says why, for a test to print.
				if refused := tc.wantInfo == scep.BadMessageCheck; refused != strings.Contains(last.String(), "refused: the envelope") {
					t.Errorf("the record of a %s reads %q", tc.wantInfo, last)
				}
				if text := failInfoText(t, raw); text != tc.behavior.FailInfoText {
					t.Errorf("failInfoText = %q, want %q", text, tc.behavior.FailInfoText)
				}
				return
			}
			c.checkIssued(t, rep)
			if tc.behavior.RASplit {
				sign, enc, _ := s.RACerts()
				if len(last.Recipients) != 1 || !last.Recipients[0].Equal(enc) {
					t.Errorf("request recipients = %d certs, want only the RA encryption certificate", len(last.Recipients))
				}
				if p7, _ := pkcs7.Parse(raw); !p7.GetOnlySigner().Equal(sign) {
					t.Errorf("CertRep not signed by the RA signing certificate")
				}
			}
		})
	}
}

func TestPendingThenCertPoll(t *testing.T) {
	s := Start(t, Behavior{Pending: 2})
	c := newTestClient(t, s, nil)
	req := c.pkcsReq(t)
	for i, want := range []scep.PKIStatus{scep.PENDING, scep.PENDING, scep.SUCCESS} {
		msg := req.Raw
		if i > 0 {
			msg = c.certPoll(t, string(req.TransactionID))
		}
		rep, _ := c.send(t, msg)
		if rep.PKIStatus != want {
			t.Fatalf("reply %d: pkiStatus = %q, want %q", i, rep.PKIStatus, want)
		}
		if want == scep.SUCCESS {
			c.checkIssued(t, rep)
		}
	}
	if got := s.PKIMessages("CertPoll"); got != 2 {
		t.Errorf("PKIMessages(CertPoll) = %d, want 2", got)
	}
	// The polls are not PKCSReqs of the transaction.
	if got := s.PKCSReqTransactions(); len(got) != 1 || got[string(req.TransactionID)] != 1 {
		t.Errorf("PKCSReqTransactions() = %v, want one PKCSReq in transaction %s", got, req.TransactionID)
	}
}

// TestStrayIsNoTransaction: a PKCSReq enveloped for another server's CA
// (a client of a closed server reaching the port this one took over) is
// counted as having arrived, but is no transaction of this server, while
// one enveloped for this server's CA before a rollover still is.
func TestStrayIsNoTransaction(t *testing.T) {
	other, s := Start(t, Behavior{}), Start(t, Behavior{})
	stray := newTestClient(t, other, nil).pkcsReq(t)
	c := newTestClient(t, s, nil)
	if rep, _ := c.send(t, stray.Raw); rep.PKIStatus != scep.FAILURE || rep.FailInfo != scep.BadMessageCheck {
		t.Fatalf("a stray PKCSReq got %s %s, want FAILURE badMessageCheck", rep.PKIStatus, rep.FailInfo)
	}
	last, _ := s.LastPKIRequest()
	if !last.Stray || last.RemoteAddr == "" || !strings.Contains(last.String(), "stray") {
		t.Errorf("the stray's record reads %q (stray %v)", last, last.Stray)
	}
	if got := s.PKIMessages("PKCSReq"); got != 1 {
		t.Errorf("PKIMessages(PKCSReq) = %d, want 1: what reached the server is counted", got)
	}
	if got := s.PKCSReqTransactions(); len(got) != 0 || s.PKCSReqs() != 0 {
		t.Errorf("PKCSReqTransactions() = %v after a stray, want none", got)
	}

	old := c.pkcsReq(t)
	if _, err := s.RolloverCA(); err != nil {
		t.Fatal(err)
	}
	c = newTestClient(t, s, nil) // parses the CertRep the new CA signs
	if rep, _ := c.send(t, old.Raw); rep.PKIStatus != scep.FAILURE {
		t.Fatalf("a PKCSReq to the CA before the rollover got %s, want FAILURE", rep.PKIStatus)
	}
	if last, _ := s.LastPKIRequest(); last.Stray {
		t.Errorf("a PKCSReq to this server's CA before its rollover is recorded as a stray: %s", last)
	}
	if got := s.PKCSReqTransactions(); len(got) != 1 || got[string(old.TransactionID)] != 1 {
		t.Errorf("PKCSReqTransactions() = %v, want one PKCSReq in transaction %s", got, old.TransactionID)
	}
}

// testClient enrols with MicroMDM's HTTP client and smallstep's messages,
// the way MicroMDM's scepclient does, with a self-signed RSA signer.
type testClient struct {
	cl       scepclient.Client
	ca       *x509.Certificate
	caCerts  []*x509.Certificate
	selector scep.CertsSelector
	key      *rsa.PrivateKey
	signer   *x509.Certificate
	csr      *x509.CertificateRequest
}

// testKey is shared: RSA generation dominates the run time otherwise.
var testKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func newTestClient(t *testing.T, s *Server, selector scep.CertsSelector) *testClient {
	t.Helper()
	key, err := testKey()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := scepclient.New(s.URL, nopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	der, n, err := cl.GetCACert(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var caCerts []*x509.Certificate
	if n > 1 {
		caCerts, err = scep.CACerts(der)
	} else {
		caCerts, err = x509.ParseCertificates(der)
	}
	if err != nil {
		t.Fatal(err)
	}
	if selector == nil {
		selector = scep.NopCertsSelector()
	}
	csrDER, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: "device-1"}, DNSNames: []string{"device-1.example"}},
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
	}
	selfDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := x509.ParseCertificate(selfDER)
	if err != nil {
		t.Fatal(err)
	}
	return &testClient{cl: cl, ca: s.CA, caCerts: caCerts, selector: selector, key: key, signer: signer, csr: csr}
}

func (c *testClient) pkcsReq(t *testing.T) *scep.PKIMessage {
	t.Helper()
	msg, err := scep.NewCSRRequest(c.csr, &scep.PKIMessage{
		MessageType: scep.PKCSReq,
		Recipients:  c.caCerts,
		SignerKey:   c.key,
		SignerCert:  c.signer,
	}, scep.WithCertsSelector(c.selector))
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// certPoll builds a CertPoll (GetCertInitial), which smallstep cannot:
// IssuerAndSubject enveloped to the CA, signed with the PKCSReq's signer.
func (c *testClient) certPoll(t *testing.T, transactionID string) []byte {
	t.Helper()
	ias, err := asn1.Marshal(struct{ Issuer, Subject asn1.RawValue }{
		Issuer:  asn1.RawValue{FullBytes: c.ca.RawSubject},
		Subject: asn1.RawValue{FullBytes: c.csr.RawSubject},
	})
	if err != nil {
		t.Fatal(err)
	}
	env, err := pkcs7.Encrypt(ias, c.selector.SelectCerts(c.caCerts))
	if err != nil {
		t.Fatal(err)
	}
	sd, err := pkcs7.NewSignedData(env)
	if err != nil {
		t.Fatal(err)
	}
	err = sd.AddSigner(c.signer, c.key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: []pkcs7.Attribute{
		{Type: oidTransactionID, Value: transactionID},
		{Type: oidMessageType, Value: typeCertPoll},
		{Type: oidSenderNonce, Value: nonce()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// send posts a pkiMessage and returns the parsed CertRep, decrypted on
// SUCCESS, and its raw bytes.
func (c *testClient) send(t *testing.T, msg []byte) (*scep.PKIMessage, []byte) {
	t.Helper()
	raw, err := c.cl.PKIOperation(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := scep.ParsePKIMessage(raw, scep.WithCACerts(c.caCerts))
	if err != nil {
		t.Fatal(err)
	}
	if rep.PKIStatus == scep.SUCCESS {
		if err := rep.DecryptPKIEnvelope(c.signer, c.key); err != nil {
			t.Fatal(err)
		}
	}
	return rep, raw
}

func (c *testClient) checkIssued(t *testing.T, rep *scep.PKIMessage) {
	t.Helper()
	crt := rep.Certificate
	if err := crt.CheckSignatureFrom(c.ca); err != nil {
		t.Errorf("issued certificate not signed by the CA: %v", err)
	}
	if !c.key.PublicKey.Equal(crt.PublicKey) || crt.Subject.CommonName != "device-1" {
		t.Errorf("issued certificate is for %s, not the CSR", crt.Subject)
	}
}

func failInfoText(t *testing.T, certRep []byte) string {
	t.Helper()
	p7, err := pkcs7.Parse(certRep)
	if err != nil {
		t.Fatal(err)
	}
	var text string
	_ = p7.UnmarshalSignedAttribute(oidFailInfoText, &text)
	return text
}

type nopLogger struct{}

func (nopLogger) Log(...any) error { return nil }
