package scep

import (
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"time"
)

// DeriveTransactionID returns the transactionID of the enrollment of one
// public key (a DER SubjectPublicKeyInfo) for one request, named by binding
// (a Kubernetes UID, say): the upper-case hex SHA-256 of both, 64 digits.
// RFC 8894 section 3.2.1.1 suggests a hash of the public key; the binding
// keeps it unique when a key is reused for another request. Derived, it
// needs no storage and nothing a client could forge: the same request
// always asks about the same transaction, and no other request can.
func DeriveTransactionID(binding string, spki []byte) TransactionID {
	h := sha256.New()
	h.Write([]byte("scep-operator transactionID v1\x00"))
	h.Write([]byte(binding))
	h.Write([]byte{0})
	h.Write(spki)
	return TransactionID(fmt.Sprintf("%X", h.Sum(nil)))
}

// SignerCertificateOptions fix what NewSelfSignedSigner would pick at
// random or from the clock, so that the same inputs give the same
// certificate byte for byte.
type SignerCertificateOptions struct {
	// TransactionID seeds the serial number.
	TransactionID TransactionID
	// NotBefore starts the validity; the certificate is valid for a year
	// from then, which outlasts any pending enrollment.
	NotBefore time.Time
}

// NewDeterministicSigner makes the self-signed certificate RFC 8894 asks a
// requester to sign with (as NewSelfSignedSigner does), but derived from
// its inputs alone: RSA PKCS #1 v1.5 signatures are deterministic, so a
// CertPoll after a restart presents the very certificate the PKCSReq did,
// without that certificate having been stored anywhere.
func NewDeterministicSigner(key *rsa.PrivateKey, rawSubject []byte, opts SignerCertificateOptions) (*Signer, error) {
	digest, err := hex.DecodeString(string(opts.TransactionID))
	if err != nil || len(digest) < 16 {
		sum := sha256.Sum256([]byte(opts.TransactionID))
		digest = sum[:]
	}
	serial := new(big.Int).SetBytes(digest[:16])
	serial.SetBit(serial, 127, 0) // positive and at most 16 bytes in DER
	if serial.Sign() == 0 {
		serial.SetInt64(1)
	}
	notBefore := opts.NotBefore.UTC().Truncate(time.Second).Add(-time.Hour)
	return selfSign(key, rawSubject, serial, notBefore, notBefore.Add(366*24*time.Hour))
}
