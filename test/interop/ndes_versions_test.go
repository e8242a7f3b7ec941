package interop

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/test/ndes"
	"github.com/smallstep/pkcs7"
)

// TestNDESVersions runs our client against every NDES preset of the
// emulator: discovery (a closed or empty GetCACaps is "no capabilities"),
// enrolment with a one-time password, a reused password refused with
// NDES's error code in words, and PENDING polled to issuance and to a
// denial.
func TestNDESVersions(t *testing.T) {
	minimal := scep.Algorithms{Cipher: scep.CipherDES3CBC, Digest: crypto.SHA1}
	ndesAlgs := scep.Algorithms{Cipher: scep.CipherDES3CBC, Digest: crypto.SHA512}
	for _, tc := range []struct {
		name    string
		opts    ndes.Options
		post    bool
		algs    scep.Algorithms
		methods []string // of the first enrolment's PKIOperations
	}{
		{name: "2016+", opts: ndes.Options{}, post: true, algs: ndesAlgs, methods: []string{"POST"}},
		// IIS's maxQueryString raised, as a GET-only NDES needs.
		{name: "2012 R2", opts: ndes.Options{Version: ndes.Version2012R2, MaxQueryBytes: 65534}, post: true, algs: ndesAlgs, methods: []string{"POST", "GET"}},
		{name: "2008 closes GetCACaps", opts: ndes.Options{Version: ndes.Version2008, MaxQueryBytes: 65534}, algs: minimal, methods: []string{"GET"}},
		{name: "2008 empty GetCACaps", opts: ndes.Options{Version: ndes.Version2008, CapsFailure: ndes.CapsEmpty, MaxQueryBytes: 65534}, algs: minimal, methods: []string{"GET"}},
		{name: "2008 GetCACaps HTTP 500", opts: ndes.Options{Version: ndes.Version2008, CapsFailure: ndes.CapsHTTP500, MaxQueryBytes: 65534}, algs: minimal, methods: []string{"GET"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := ndes.Start(t, tc.opts)
			rec := &recorder{}
			c := newClient(t, scepclient.Config{URL: srv.URL, Transport: rec})
			pin := scep.FingerprintOf(srv.CA, crypto.SHA256)
			info, err := c.Discover(ctxT(t), &pin)
			if err != nil {
				t.Fatal(err)
			}
			if info.Caps.POST() != tc.post || info.Algorithms != tc.algs || !info.Recipient.Equal(srv.RAEncrypt) {
				t.Fatalf("caps %v, algorithms %v, recipient %s", info.Caps.Strings(), info.Algorithms, info.Recipient.Subject)
			}

			e := simple("dev-" + strings.ReplaceAll(tc.name, " ", "-"))
			e.tmpl.ChallengePassword = srv.IssuePassword()
			rep, _, csr, err := enroll(t, c, info, e)
			checkIssued(t, rep, err, csr, srv.CA)
			var methods []string
			for _, r := range srv.SCEP.HTTPRequests() {
				if r.Operation == "PKIOperation" {
					methods = append(methods, r.Method)
				}
			}
			if !reflect.DeepEqual(methods, tc.methods) {
				t.Errorf("PKIOperation methods %v, want %v", methods, tc.methods)
			}

			// The same password again: NDES's code, in words.
			_, _, _, err = enroll(t, c, info, e)
			var failure *scep.FailureError
			if !errors.As(err, &failure) || failure.HResult != scep.HResultInvalidPassword || !strings.Contains(err.Error(), "password was refused") {
				t.Errorf("reused password: %v", err)
			}

			srv.Set(func(o *ndes.Options) { o.ManualApproval = true })
			for _, approve := range []bool{true, false} {
				e := simple("pending-" + itoa(len(srv.PendingTransactions())))
				e.tmpl.ChallengePassword = srv.IssuePassword()
				rep, msg, csr, err := enroll(t, c, info, e)
				if err != nil || rep.Status != scep.StatusPending {
					t.Fatalf("PKCSReq under approval: %v, %v", rep, err)
				}
				if approve {
					if err := srv.Approve(string(msg.TransactionID)); err != nil {
						t.Fatal(err)
					}
					rep, err = c.CertPoll(ctxT(t), info, msg.Signer, msg.TransactionID, csr.RawSubject)
					checkIssued(t, rep, err, csr, srv.CA)
					continue
				}
				if err := srv.Reject(string(msg.TransactionID)); err != nil {
					t.Fatal(err)
				}
				_, err = c.CertPoll(ctxT(t), info, msg.Signer, msg.TransactionID, csr.RawSubject)
				if !errors.As(err, &failure) || failure.HResult != scep.HResultAdminDenied || !strings.Contains(err.Error(), "CA manager denied") {
					t.Errorf("rejected: %v", err)
				}
			}
		})
	}
}

// TestNDESReplyEncryption: what each release encrypts replies with, and
// our client reads it: 2016+ answers an AES request in AES with PKCS#1
// v1.5 key transport (it decrypts AES though it does not announce it),
// 2012 R2 with RSAES-OAEP key transport, 2008 in single DES whatever was
// asked.
func TestNDESReplyEncryption(t *testing.T) {
	oaep := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	for _, tc := range []struct {
		name          string
		opts          ndes.Options
		keyTransport  asn1.ObjectIdentifier
		contentCipher asn1.ObjectIdentifier
	}{
		{"2016+ AES", ndes.Options{Caps: []string{"POSTPKIOperation", "AES", "SHA-256"}}, pkcs7.OIDEncryptionAlgorithmRSA, pkcs7.OIDEncryptionAlgorithmAES256CBC},
		{"2012 R2 AES (OAEP)", ndes.Options{Version: ndes.Version2012R2, Caps: []string{"AES", "SHA-256"}, MaxQueryBytes: -1}, oaep, pkcs7.OIDEncryptionAlgorithmAES256CBC},
		{"2008 DES", ndes.Options{Version: ndes.Version2008, MaxQueryBytes: -1}, pkcs7.OIDEncryptionAlgorithmRSA, pkcs7.OIDEncryptionAlgorithmDESCBC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := ndes.Start(t, tc.opts)
			c := newClient(t, scepclient.Config{URL: srv.URL})
			info, err := c.Discover(ctxT(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			e := simple("enc")
			e.tmpl.ChallengePassword = srv.IssuePassword()
			msg, csr := request(t, info, e)
			raw, err := c.PKIOperation(ctxT(t), info.Caps, msg.Raw)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := msg.ReadReply(raw, info.CACerts.All())
			checkIssued(t, rep, err, csr, srv.CA)

			keyTransport, contentCipher := replyEnvelope(t, raw)
			if !keyTransport.Equal(tc.keyTransport) || !contentCipher.Equal(tc.contentCipher) {
				t.Errorf("reply key transport %v, cipher %v; want %v, %v", keyTransport, contentCipher, tc.keyTransport, tc.contentCipher)
			}
		})
	}
}

// replyEnvelope returns the key transport and content cipher of a CertRep's
// pkcsPKIEnvelope.
func replyEnvelope(t *testing.T, certRep []byte) (keyTransport, contentCipher asn1.ObjectIdentifier) {
	t.Helper()
	p7, err := pkcs7.Parse(certRep)
	if err != nil {
		t.Fatal(err)
	}
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"tag:0"`
	}
	var env struct {
		Version    int
		Recipients []struct {
			Version         int
			IssuerAndSerial asn1.RawValue
			KeyAlgorithm    pkix.AlgorithmIdentifier
			Key             []byte
		} `asn1:"set"`
		Content struct {
			ContentType asn1.ObjectIdentifier
			Algorithm   pkix.AlgorithmIdentifier
			Data        asn1.RawValue `asn1:"tag:0,optional"`
		}
	}
	if _, err := asn1.Unmarshal(p7.Content, &ci); err != nil {
		t.Fatal(err)
	}
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &env); err != nil {
		t.Fatal(err)
	}
	if len(env.Recipients) != 1 {
		t.Fatalf("%d recipients", len(env.Recipients))
	}
	return env.Recipients[0].KeyAlgorithm.Algorithm, env.Content.Algorithm.Algorithm
}
