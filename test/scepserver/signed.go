package scepserver

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"slices"
	"time"

	"github.com/smallstep/pkcs7"
)

// The CertRep SignedData as NDES writes it. pkcs7's AddSigner always adds
// a signingTime and the signer's certificate and names the signature
// sha256WithRSAEncryption (or the like); NDES does none of that (see
// Behavior.ReplyRSAEncryption), so those replies are built here.

var (
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
)

type signedData struct {
	Version          int
	DigestAlgorithms []pkix.AlgorithmIdentifier `asn1:"set"`
	ContentInfo      contentInfo
	Certificates     asn1.RawValue `asn1:"optional"`
	SignerInfos      []signerInfo  `asn1:"set"`
}

type signerInfo struct {
	Version                   int
	IssuerAndSerial           issuerAndSerial
	DigestAlgorithm           pkix.AlgorithmIdentifier
	AuthenticatedAttributes   asn1.RawValue
	DigestEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedDigest           []byte
}

// signOptions are the ways a CertRep's SignedData differs between servers.
type signOptions struct {
	rsaEncryption bool // signature algorithm rsaEncryption, not sha*WithRSAEncryption
	noCerts       bool // no certificates field
	noSigningTime bool // no signingTime attribute
	badSignature  bool // flip bits in the signature value
}

// signReply signs content (the pkcsPKIEnvelope, or NDES's single 0x00
// byte) with key as cert, with the SCEP attributes attrs.
func signReply(content []byte, cert *x509.Certificate, key crypto.PrivateKey, digestOID asn1.ObjectIdentifier, attrs []pkcs7.Attribute, o signOptions) ([]byte, error) {
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("scepserver: NDES-form replies are signed with RSA, not %T", key)
	}
	hash, sigOID, err := replyHash(digestOID)
	if err != nil {
		return nil, err
	}
	if o.rsaEncryption {
		sigOID = oidRSAEncryption
	}
	h := hash.New()
	h.Write(content)
	all := []pkcs7.Attribute{
		{Type: pkcs7.OIDAttributeContentType, Value: pkcs7.OIDData},
		{Type: pkcs7.OIDAttributeMessageDigest, Value: h.Sum(nil)},
	}
	if !o.noSigningTime {
		all = append(all, pkcs7.Attribute{Type: pkcs7.OIDAttributeSigningTime, Value: time.Now().UTC()})
	}
	all = append(all, attrs...)
	// SET OF Attribute in DER: the encoded attributes sorted.
	var encoded [][]byte
	for _, a := range all {
		v, err := asn1.Marshal(a.Value)
		if err != nil {
			return nil, fmt.Errorf("scepserver: attribute %v: %w", a.Type, err)
		}
		e, err := asn1.Marshal(struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue `asn1:"set"`
		}{a.Type, asn1.RawValue{FullBytes: setOf(v)}})
		if err != nil {
			return nil, err
		}
		encoded = append(encoded, e)
	}
	slices.SortFunc(encoded, bytes.Compare)
	contents := bytes.Join(encoded, nil)
	set := setOf(contents) // what is signed: the attributes under a SET tag, not [0]
	d := hash.New()
	d.Write(set)
	sig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, hash, d.Sum(nil))
	if err != nil {
		return nil, err
	}
	if o.badSignature {
		sig[len(sig)/2] ^= 0xff
	}
	octets, err := asn1.Marshal(content)
	if err != nil {
		return nil, err
	}
	digestAlg := pkix.AlgorithmIdentifier{Algorithm: digestOID, Parameters: asn1.NullRawValue}
	sd := signedData{
		Version:          1,
		DigestAlgorithms: []pkix.AlgorithmIdentifier{digestAlg},
		ContentInfo: contentInfo{
			ContentType: pkcs7.OIDData,
			Content:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: octets},
		},
		SignerInfos: []signerInfo{{
			Version:                   1,
			IssuerAndSerial:           issuerAndSerial{IssuerName: asn1.RawValue{FullBytes: cert.RawIssuer}, SerialNumber: cert.SerialNumber},
			DigestAlgorithm:           digestAlg,
			AuthenticatedAttributes:   asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: contents},
			DigestEncryptionAlgorithm: pkix.AlgorithmIdentifier{Algorithm: sigOID, Parameters: asn1.NullRawValue},
			EncryptedDigest:           sig,
		}},
	}
	if !o.noCerts {
		sd.Certificates = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: cert.Raw}
	}
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	return wrap(pkcs7.OIDSignedData, inner)
}

// replyHash maps a digest OID to its hash and sha*WithRSAEncryption OID.
func replyHash(oid asn1.ObjectIdentifier) (crypto.Hash, asn1.ObjectIdentifier, error) {
	switch {
	case oid.Equal(pkcs7.OIDDigestAlgorithmSHA1):
		return crypto.SHA1, oidSHA1WithRSA, nil
	case oid.Equal(pkcs7.OIDDigestAlgorithmSHA256):
		return crypto.SHA256, oidSHA256WithRSA, nil
	case oid.Equal(pkcs7.OIDDigestAlgorithmSHA384):
		return crypto.SHA384, oidSHA384WithRSA, nil
	case oid.Equal(pkcs7.OIDDigestAlgorithmSHA512):
		return crypto.SHA512, oidSHA512WithRSA, nil
	}
	return 0, nil, fmt.Errorf("scepserver: no reply digest for OID %v", oid)
}

// setOf wraps DER contents in a SET tag.
func setOf(contents []byte) []byte {
	b, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: contents})
	return b
}
