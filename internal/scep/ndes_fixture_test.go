package scep

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// The real NDES 2012 reply of sscep issue 59 (see
// testdata/ndes2012-getcrl-failure.README.md).
const (
	ndes2012TransactionID = "9CB1CB998B7FCC0142297B492988AFB4"
	ndes2012RecipientHex  = "136f36f4a38ec0c974ef1007a9abb22b"
	ndes2012SignerSerial  = "79000000024898492e88fafefa000000000002"
)

func ndes2012Reply(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/ndes2012-getcrl-failure.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PKCS7" {
		t.Fatal("fixture is not a PEM PKCS7")
	}
	return block.Bytes
}

// ndesSignerInfo is the fixture's one SignerInfo, with its attributes and
// signature as raw bytes.
type ndesSignerInfo struct {
	Version         int
	IssuerAndSerial struct {
		Issuer asn1.RawValue
		Serial *big.Int
	}
	DigestAlgorithm pkix.AlgorithmIdentifier
	Attributes      asn1.RawValue `asn1:"tag:0"`
	SignatureAlg    pkix.AlgorithmIdentifier
	Signature       []byte
}

func ndesSigner(t *testing.T, der []byte) ndesSignerInfo {
	t.Helper()
	var outer struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	var sd struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		ContentInfo      asn1.RawValue
		Certificates     asn1.RawValue    `asn1:"optional,tag:0"`
		SignerInfos      []ndesSignerInfo `asn1:"set"`
	}
	if _, err := asn1.Unmarshal(outer.Content.Bytes, &sd); err != nil {
		t.Fatal(err)
	}
	if len(sd.Certificates.FullBytes) != 0 || len(sd.SignerInfos) != 1 {
		t.Fatalf("fixture: %d bytes of certificates, %d signers; want none and one", len(sd.Certificates.FullBytes), len(sd.SignerInfos))
	}
	return sd.SignerInfos[0]
}

// TestNDES2012ReplyStructure reads the real reply: NDES's form of a
// FAILURE, which our parser must take as it is.
func TestNDES2012ReplyStructure(t *testing.T) {
	der := ndes2012Reply(t)
	rep, err := ParseCertRep(der)
	if err != nil {
		t.Fatal(err)
	}
	if rep.MessageType != TypeCertRep || rep.Status != StatusFailure || rep.FailInfo != BadRequest ||
		rep.FailInfoText != "" || rep.HResult != HResultInvalidArg || string(rep.TransactionID) != ndes2012TransactionID {
		t.Errorf("parsed %+v", rep)
	}
	if len(rep.embedded()) != 0 {
		t.Errorf("the reply carries %d certificates; NDES sends none", len(rep.embedded()))
	}
	if hex.EncodeToString(rep.RecipientNonce) != ndes2012RecipientHex || len(rep.SenderNonce) != 16 {
		t.Errorf("nonces %x / %x", rep.SenderNonce, rep.RecipientNonce)
	}
	if !bytes.Equal(rep.p7.Content, []byte{0}) {
		t.Errorf("content %x, want NDES's single 0x00", rep.p7.Content)
	}
	si := ndesSigner(t, der)
	if !si.SignatureAlg.Algorithm.Equal(pkcs7.OIDEncryptionAlgorithmRSA) || !si.DigestAlgorithm.Algorithm.Equal(pkcs7.OIDDigestAlgorithmSHA1) {
		t.Errorf("signature %v with digest %v; NDES 2012 wrote rsaEncryption with SHA-1", si.SignatureAlg.Algorithm, si.DigestAlgorithm.Algorithm)
	}
	if si.IssuerAndSerial.Serial.Text(16) != ndes2012SignerSerial {
		t.Errorf("signer serial %x", si.IssuerAndSerial.Serial)
	}
	var signingTime time.Time
	if rep.p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &signingTime) == nil {
		t.Error("the reply has a signingTime; NDES writes none")
	}
	// What can be checked without NDES's certificate: the signed
	// messageDigest is the content's.
	var digest []byte
	if err := rep.p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeMessageDigest, &digest); err != nil {
		t.Fatal(err)
	}
	if sum := sha1.Sum(rep.p7.Content); !bytes.Equal(digest, sum[:]) {
		t.Errorf("messageDigest %x is not SHA-1 of the content %x", digest, sum)
	}
}

// TestNDES2012ReplySignature verifies the real reply's structure
// signed: the same bytes with only the signature replaced by one of a
// test key whose certificate has NDES's issuer and serial number (NDES's
// own certificate was never published). The original signature must not
// verify with that certificate, so the check is real.
func TestNDES2012ReplySignature(t *testing.T) {
	der := ndes2012Reply(t)
	si := ndesSigner(t, der)
	caKey, raKey := testKey(t, 0), testKey(t, 1)
	ca := testCert(t, caKey, "SRV2012-CA", true, x509.KeyUsageCertSign, nil, nil)
	if !bytes.Equal(ca.RawSubject, si.IssuerAndSerial.Issuer.FullBytes) {
		t.Fatalf("test CA subject %x does not encode as NDES's issuer %x", ca.RawSubject, si.IssuerAndSerial.Issuer.FullBytes)
	}
	tmpl := &x509.Certificate{
		SerialNumber: si.IssuerAndSerial.Serial,
		Subject:      pkix.Name{CommonName: "SRV2012-NDES-MSCEP-RA"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	raDER, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &raKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := x509.ParseCertificate(raDER)
	if err != nil {
		t.Fatal(err)
	}
	trusted := []*x509.Certificate{ra, ca} // NDES's GetCACert order, less the encryption RA

	rep, err := ParseCertRep(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.VerifySignature(trusted); err == nil {
		t.Fatal("NDES's own signature verified with a test key")
	}

	// Sign the attributes as RFC 5652 section 5.4 says: their DER under a
	// SET tag instead of [0].
	signed := bytes.Clone(si.Attributes.FullBytes)
	signed[0] = 0x31
	sum := sha1.Sum(signed)
	sig, err := rsa.SignPKCS1v15(rand.Reader, raKey, crypto.SHA1, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != len(si.Signature) || bytes.Count(der, si.Signature) != 1 {
		t.Fatal("cannot transplant the signature")
	}
	resigned := bytes.Replace(der, si.Signature, sig, 1)

	rep, err = ParseCertRep(resigned)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.VerifySignature(trusted); err != nil {
		t.Fatalf("re-signed NDES reply: %v", err)
	}
	// And through ReadReply, as the client reads it: a FAILURE with the
	// code in words.
	m := &Message{Type: TypeGetCRL, TransactionID: ndes2012TransactionID}
	m.SenderNonce, _ = hex.DecodeString(ndes2012RecipientHex)
	_, err = m.ReadReply(resigned, trusted)
	var failure *FailureError
	if !errors.As(err, &failure) || failure.HResult != HResultInvalidArg || failure.FailInfo != BadRequest {
		t.Fatalf("ReadReply = %v, want a FailureError with E_INVALIDARG", err)
	}
	if msg := failure.Error(); !strings.Contains(msg, "0x80070057") || !strings.Contains(msg, "E_INVALIDARG") {
		t.Errorf("message %q does not name the code", msg)
	}
	// A tampered attribute breaks it.
	tampered := bytes.Replace(resigned, []byte("-2147024809"), []byte("-2147024808"), 1)
	if rep, err := ParseCertRep(tampered); err != nil || rep.VerifySignature(trusted) == nil {
		t.Errorf("tampered error code: parse %v, signature verified", err)
	}
}

func TestHResult(t *testing.T) {
	for _, c := range []struct {
		in   string
		want HResult
	}{
		{"-2147024809", HResultInvalidArg},
		{"2147942487", HResultInvalidArg}, // the same, unsigned
		{" -2146877422 ", HResultTemplateDenied},
		{"0x80070057", 0},
		{"", 0},
		{"99999999999999999999", 0},
		{"4294967296", 0},
	} {
		if got := parseHResult(c.in); got != c.want {
			t.Errorf("parseHResult(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	if HResultCAUnavailable.String() != "0x800706BA" || HResultCAUnavailable.Meaning() == "" || hr(0x80091234).Meaning() != "" {
		t.Error("String/Meaning")
	}
	for _, h := range []HResult{HResultInvalidPassword, HResultTemplateDenied, HResultCAUnavailable} {
		msg := (&FailureError{FailInfo: BadRequest, HResult: h}).Error()
		if !strings.Contains(msg, h.String()) || !strings.Contains(msg, h.Meaning()) {
			t.Errorf("%v: %q", h, msg)
		}
	}
}
