package scep

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// ContentCipher is the symmetric cipher that protects a pkiMessage's content.
type ContentCipher int

// The content ciphers SCEP servers accept, weakest first.
const (
	CipherDES ContentCipher = iota
	CipherDES3CBC
	CipherAES128CBC
	CipherAES256CBC
)

var (
	oidDESCBC    = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}
	oidDES3CBC   = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	oidAES128CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}

	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}

	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// String names the cipher as OpenSSL does.
func (c ContentCipher) String() string {
	switch c {
	case CipherDES:
		return "DES-CBC"
	case CipherDES3CBC:
		return "DES-EDE3-CBC"
	case CipherAES128CBC:
		return "AES-128-CBC"
	case CipherAES256CBC:
		return "AES-256-CBC"
	}
	return fmt.Sprintf("ContentCipher(%d)", int(c))
}

// OID is the algorithm identifier written into EncryptedContentInfo.
func (c ContentCipher) OID() asn1.ObjectIdentifier {
	switch c {
	case CipherDES3CBC:
		return oidDES3CBC
	case CipherAES128CBC:
		return oidAES128CBC
	case CipherAES256CBC:
		return oidAES256CBC
	}
	return oidDESCBC
}

func (c ContentCipher) keySize() int {
	switch c {
	case CipherDES3CBC:
		return 24
	case CipherAES128CBC:
		return 16
	case CipherAES256CBC:
		return 32
	}
	return 8
}

func (c ContentCipher) block(key []byte) (cipher.Block, error) {
	switch c {
	case CipherDES:
		return des.NewCipher(key)
	case CipherDES3CBC:
		return des.NewTripleDESCipher(key)
	case CipherAES128CBC, CipherAES256CBC:
		return aes.NewCipher(key)
	}
	return nil, fmt.Errorf("unsupported content cipher %v", c)
}

// Algorithms are the choices one pkiMessage is built with.
type Algorithms struct {
	// Cipher encrypts the message content for the server.
	Cipher ContentCipher
	// Digest is the SignedData digest algorithm.
	Digest crypto.Hash
}

// String reads like "AES-256-CBC/SHA-256".
func (a Algorithms) String() string {
	return a.Cipher.String() + "/" + a.Digest.String()
}

func digestOID(h crypto.Hash) (asn1.ObjectIdentifier, error) {
	switch h {
	case crypto.SHA1:
		return oidSHA1, nil
	case crypto.SHA256:
		return oidSHA256, nil
	case crypto.SHA512:
		return oidSHA512, nil
	}
	return nil, fmt.Errorf("unsupported digest %v", h)
}

// The EnvelopedData structures of RFC 5652 section 6, as SCEP uses them: one
// key-transport recipient identified by issuer and serial number.
type envelopedData struct {
	Version              int
	RecipientInfos       []keyTransRecipientInfo `asn1:"set"`
	EncryptedContentInfo encryptedContentInfo
}

type keyTransRecipientInfo struct {
	Version                int
	IssuerAndSerialNumber  issuerAndSerial
	KeyEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedKey           []byte
}

type issuerAndSerial struct {
	IssuerName   asn1.RawValue
	SerialNumber *big.Int
}

type encryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedContent           asn1.RawValue `asn1:"tag:0,optional"`
}

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

// envelope encrypts content for recipient with the given cipher and returns a
// DER ContentInfo holding EnvelopedData. It is written here rather than taken
// from smallstep/pkcs7 because that package keeps the cipher in a package
// variable (racy across servers with different capabilities) and cannot
// encrypt with triple DES, which old NDES servers require.
func envelope(rnd io.Reader, content []byte, recipient *x509.Certificate, c ContentCipher) ([]byte, error) {
	pub, ok := recipient.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("recipient %q has a %T key; SCEP key transport needs RSA", recipient.Subject, recipient.PublicKey)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	key := make([]byte, c.keySize())
	if _, err := io.ReadFull(rnd, key); err != nil {
		return nil, err
	}
	block, err := c.block(key)
	if err != nil {
		return nil, err
	}
	iv := make([]byte, block.BlockSize())
	if _, err := io.ReadFull(rnd, iv); err != nil {
		return nil, err
	}
	padded := pkcs7Pad(content, block.BlockSize())
	ciphertext := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ciphertext, padded)

	// PKCS #1 v1.5 key transport is what every SCEP server decrypts,
	// NDES included; OAEP is not understood by NDES.
	encryptedKey, err := rsa.EncryptPKCS1v15(rnd, pub, key) //nolint:staticcheck // SCEP servers require v1.5 key transport.
	if err != nil {
		return nil, fmt.Errorf("encrypting the content key: %w", err)
	}
	ivParam, err := asn1.Marshal(iv)
	if err != nil {
		return nil, err
	}
	ed := envelopedData{
		Version: 0,
		RecipientInfos: []keyTransRecipientInfo{{
			Version:                0,
			IssuerAndSerialNumber:  issuerAndSerial{IssuerName: asn1.RawValue{FullBytes: recipient.RawIssuer}, SerialNumber: recipient.SerialNumber},
			KeyEncryptionAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidRSAEncryption, Parameters: asn1.NullRawValue},
			EncryptedKey:           encryptedKey,
		}},
		EncryptedContentInfo: encryptedContentInfo{
			ContentType:                oidData,
			ContentEncryptionAlgorithm: pkix.AlgorithmIdentifier{Algorithm: c.OID(), Parameters: asn1.RawValue{FullBytes: ivParam}},
			EncryptedContent:           asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: ciphertext},
		},
	}
	inner, err := asn1.Marshal(ed)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(contentInfo{
		ContentType: oidEnvelopedData,
		Content:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner},
	})
}

func pkcs7Pad(data []byte, blockSize int) []byte {
	n := blockSize - len(data)%blockSize
	out := make([]byte, len(data), len(data)+n)
	copy(out, data)
	for i := 0; i < n; i++ {
		out = append(out, byte(n))
	}
	return out
}

var errNoRSARecipient = errors.New("no RSA certificate to encrypt to")
