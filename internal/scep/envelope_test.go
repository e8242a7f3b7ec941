package scep

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"testing"

	"github.com/smallstep/pkcs7"
)

// TestMessageDecryptsWithPKCS7 builds a PKCSReq with each cipher and digest
// and opens it the way MicroMDM and step-ca do (smallstep/pkcs7): signature,
// SCEP attributes, decryption by the recipient.
func TestMessageDecryptsWithPKCS7(t *testing.T) {
	caKey := testKey(t, 0)
	ca := testCert(t, caKey, "CA", true, x509.KeyUsageCertSign, nil, nil)
	key := testKey(t, 1)
	csr, err := NewCSR(CSRTemplate{RawSubject: nil, DNSNames: []string{"a.example"}, ChallengePassword: "pw"}, key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := NewSelfSignedSigner(key, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []ContentCipher{CipherDES, CipherDES3CBC, CipherAES128CBC, CipherAES256CBC} {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA512} {
			algs := Algorithms{Cipher: c, Digest: h}
			t.Run(algs.String(), func(t *testing.T) {
				msg, err := NewPKCSReq(csr, MessageOptions{Signer: signer, Recipient: ca, Algorithms: algs})
				if err != nil {
					t.Fatal(err)
				}
				p7, err := pkcs7.Parse(msg.Raw)
				if err != nil {
					t.Fatal(err)
				}
				if err := p7.Verify(); err != nil {
					t.Fatalf("signature: %v", err)
				}
				var mt, tx string
				if err := p7.UnmarshalSignedAttribute(oidMessageType, &mt); err != nil || mt != "19" {
					t.Errorf("messageType = %q, %v", mt, err)
				}
				if err := p7.UnmarshalSignedAttribute(oidTransactionID, &tx); err != nil || tx != string(msg.TransactionID) {
					t.Errorf("transactionID = %q, %v", tx, err)
				}
				env, err := pkcs7.Parse(p7.Content)
				if err != nil {
					t.Fatal(err)
				}
				plain, err := env.Decrypt(ca, caKey)
				if err != nil {
					t.Fatalf("decrypt: %v", err)
				}
				if !bytes.Equal(plain, csr) {
					t.Errorf("decrypted content is not the CSR")
				}
			})
		}
	}
}
