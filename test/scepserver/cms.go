package scepserver

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"

	"github.com/smallstep/pkcs7"
)

// The CMS (PKCS#7) structures this server reads and writes itself: pkcs7
// keeps its own unexported, and encrypts only with the cipher named by a
// package-level variable, which a client under test may be changing.

var (
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSAESOAEP     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
)

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

type envelopedData struct {
	Version              int
	RecipientInfos       []recipientInfo `asn1:"set"`
	EncryptedContentInfo encryptedContentInfo
}

type recipientInfo struct {
	Version                int
	IssuerAndSerial        issuerAndSerial
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

// gcmParameters mirror smallstep/pkcs7's AES-GCM parameters, whose encoding
// (nonce as [4] IMPLICIT, wrapped in a primitive SEQUENCE tag) is its own,
// not RFC 5084's; pkcs7-based clients can only read this one.
type gcmParameters struct {
	Nonce  []byte `asn1:"tag:4"`
	ICVLen int
}

// degenerateSignedData is a certificates-and-CRLs-only SignedData (RFC 8894
// section 3.4), which pkcs7 can build only without CRLs.
type degenerateSignedData struct {
	Version          int
	DigestAlgorithms []pkix.AlgorithmIdentifier `asn1:"set"`
	ContentInfo      contentInfo
	Certificates     asn1.RawValue   `asn1:"optional"`
	CRLs             asn1.RawValue   `asn1:"optional"`
	SignerInfos      []asn1.RawValue `asn1:"set"`
}

// parseEnvelope reads the EnvelopedData inside a pkiMessage without
// decrypting it, for what the client chose (cipher, recipients).
func parseEnvelope(der []byte) (*envelopedData, error) {
	var ci contentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		return nil, err
	}
	if !ci.ContentType.Equal(pkcs7.OIDEnvelopedData) {
		return nil, fmt.Errorf("content type %v is not envelopedData", ci.ContentType)
	}
	var env envelopedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &env); err != nil {
		return nil, err
	}
	return &env, nil
}

// wrap puts inner into a ContentInfo of the given type.
func wrap(contentType asn1.ObjectIdentifier, inner []byte) ([]byte, error) {
	return asn1.Marshal(contentInfo{
		ContentType: contentType,
		Content:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner},
	})
}

// degenerate builds the degenerate SignedData that carries certificates
// (GetCACert, CertRep) or a CRL (GetCRL's CertRep).
func degenerate(certs []*x509.Certificate, crl []byte) ([]byte, error) {
	sd := degenerateSignedData{Version: 1, ContentInfo: contentInfo{ContentType: pkcs7.OIDData}}
	if len(certs) > 0 {
		var buf bytes.Buffer
		for _, c := range certs {
			buf.Write(c.Raw)
		}
		sd.Certificates = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: buf.Bytes()}
	}
	if crl != nil {
		sd.CRLs = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: crl}
	}
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	return wrap(pkcs7.OIDSignedData, inner)
}

// envelope encrypts content to recipient's RSA key with the given content
// cipher: PKCS#1 v1.5 key transport, as every SCEP server does, or
// RSAES-OAEP with its default parameters (SHA-1, MGF1-SHA-1), as NDES on
// Windows Server 2012 R2 does for replies to AES requests.
func envelope(content []byte, recipient *x509.Certificate, cipherOID asn1.ObjectIdentifier, oaep bool) ([]byte, error) {
	pub, ok := recipient.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("scepserver: cannot envelope the reply to a %T signer certificate: SCEP needs RSA", recipient.PublicKey)
	}
	key, alg, ciphertext, err := encryptContent(content, cipherOID)
	if err != nil {
		return nil, err
	}
	keyAlg := pkix.AlgorithmIdentifier{Algorithm: oidRSAEncryption, Parameters: asn1.NullRawValue}
	var encKey []byte
	if oaep {
		// An empty RSAES-OAEP-params SEQUENCE: every field at its default.
		keyAlg = pkix.AlgorithmIdentifier{Algorithm: oidRSAESOAEP, Parameters: asn1.RawValue{FullBytes: []byte{0x30, 0x00}}}
		encKey, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, key, nil)
	} else {
		encKey, err = rsa.EncryptPKCS1v15(rand.Reader, pub, key) //nolint:staticcheck // SCEP key transport is PKCS #1 v1.5, as every server and client does it
	}
	if err != nil {
		return nil, err
	}
	inner, err := asn1.Marshal(envelopedData{
		RecipientInfos: []recipientInfo{{
			IssuerAndSerial:        issuerAndSerial{IssuerName: asn1.RawValue{FullBytes: recipient.RawIssuer}, SerialNumber: recipient.SerialNumber},
			KeyEncryptionAlgorithm: keyAlg,
			EncryptedKey:           encKey,
		}},
		EncryptedContentInfo: encryptedContentInfo{
			ContentType:                pkcs7.OIDData,
			ContentEncryptionAlgorithm: alg,
			EncryptedContent:           asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: ciphertext},
		},
	})
	if err != nil {
		return nil, err
	}
	return wrap(pkcs7.OIDEnvelopedData, inner)
}

func encryptContent(content []byte, oid asn1.ObjectIdentifier) (key []byte, alg pkix.AlgorithmIdentifier, ciphertext []byte, err error) {
	var keyLen int
	var newBlock func([]byte) (cipher.Block, error)
	gcm := false
	switch {
	case oid.Equal(pkcs7.OIDEncryptionAlgorithmDESCBC):
		keyLen, newBlock = 8, des.NewCipher
	case oid.Equal(pkcs7.OIDEncryptionAlgorithmDESEDE3CBC):
		keyLen, newBlock = 24, des.NewTripleDESCipher
	case oid.Equal(pkcs7.OIDEncryptionAlgorithmAES128CBC):
		keyLen, newBlock = 16, aes.NewCipher
	case oid.Equal(pkcs7.OIDEncryptionAlgorithmAES256CBC):
		keyLen, newBlock = 32, aes.NewCipher
	case oid.Equal(pkcs7.OIDEncryptionAlgorithmAES128GCM):
		keyLen, newBlock, gcm = 16, aes.NewCipher, true
	case oid.Equal(pkcs7.OIDEncryptionAlgorithmAES256GCM):
		keyLen, newBlock, gcm = 32, aes.NewCipher, true
	default:
		return nil, alg, nil, fmt.Errorf("scepserver: no reply cipher for content-encryption OID %v", oid)
	}
	key = make([]byte, keyLen)
	rand.Read(key)
	block, err := newBlock(key)
	if err != nil {
		return nil, alg, nil, err
	}
	if gcm {
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, alg, nil, err
		}
		nonce := make([]byte, aead.NonceSize())
		rand.Read(nonce)
		params, err := asn1.Marshal(gcmParameters{Nonce: nonce, ICVLen: aead.Overhead()})
		if err != nil {
			return nil, alg, nil, err
		}
		alg = pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.RawValue{Tag: asn1.TagSequence, Bytes: params}}
		return key, alg, aead.Seal(nil, nonce, content, nil), nil
	}
	iv := make([]byte, block.BlockSize())
	rand.Read(iv)
	padded := pad(content, block.BlockSize())
	ciphertext = make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ciphertext, padded)
	alg = pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.RawValue{Tag: asn1.TagOctetString, Bytes: iv}}
	return key, alg, ciphertext, nil
}

// pad applies PKCS#7 padding (RFC 5652 section 6.3).
func pad(data []byte, blockSize int) []byte {
	n := blockSize - len(data)%blockSize
	return append(bytes.Clone(data), bytes.Repeat([]byte{byte(n)}, n)...)
}
