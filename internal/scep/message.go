package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/scep-operator/scep-operator/internal/servertext"
)

// MessageType is a pkiMessage's messageType attribute (RFC 8894 section 3.2.1.2).
type MessageType string

// The message types this package builds or reads.
const (
	TypeCertRep    MessageType = "3"
	TypeRenewalReq MessageType = "17"
	TypePKCSReq    MessageType = "19"
	TypeCertPoll   MessageType = "20"
	TypeGetCert    MessageType = "21"
	TypeGetCRL     MessageType = "22"
)

// maxCodeBytes bounds how much of an unknown messageType, pkiStatus or
// failInfo (a server's string, normally a number) is shown.
const maxCodeBytes = 16

// String names the type; an unknown value is shown quoted, cleaned and
// capped (it is the server's), never a panic.
func (t MessageType) String() string {
	switch t {
	case TypeCertRep:
		return "CertRep"
	case TypeRenewalReq:
		return "RenewalReq"
	case TypePKCSReq:
		return "PKCSReq"
	case TypeCertPoll:
		return "CertPoll"
	case TypeGetCert:
		return "GetCert"
	case TypeGetCRL:
		return "GetCRL"
	}
	return "MessageType(" + servertext.Quote(string(t), maxCodeBytes) + ")"
}

// PKIStatus is a CertRep's pkiStatus attribute.
type PKIStatus string

// The three statuses of RFC 8894 section 3.2.1.3.
const (
	StatusSuccess PKIStatus = "0"
	StatusFailure PKIStatus = "2"
	StatusPending PKIStatus = "3"
)

// String names the status; an unknown value is shown quoted, cleaned and capped.
func (s PKIStatus) String() string {
	switch s {
	case StatusSuccess:
		return "SUCCESS"
	case StatusFailure:
		return "FAILURE"
	case StatusPending:
		return "PENDING"
	}
	return "PKIStatus(" + servertext.Quote(string(s), maxCodeBytes) + ")"
}

// FailInfo is a CertRep's failInfo attribute (RFC 8894 section 3.2.1.4).
type FailInfo string

// The failInfo values of RFC 8894.
const (
	BadAlg          FailInfo = "0"
	BadMessageCheck FailInfo = "1"
	BadRequest      FailInfo = "2"
	BadTime         FailInfo = "3"
	BadCertID       FailInfo = "4"
)

// String names the value; an unknown one is shown quoted, cleaned and capped.
func (f FailInfo) String() string {
	switch f {
	case BadAlg:
		return "badAlg"
	case BadMessageCheck:
		return "badMessageCheck"
	case BadRequest:
		return "badRequest"
	case BadTime:
		return "badTime"
	case BadCertID:
		return "badCertId"
	case "":
		return "unspecified"
	}
	return "failInfo(" + servertext.Quote(string(f), maxCodeBytes) + ")"
}

// Meaning says in words what the server objected to.
func (f FailInfo) Meaning() string {
	switch f {
	case BadAlg:
		return "unrecognized or unsupported algorithm"
	case BadMessageCheck:
		return "integrity check failed (the server could not verify or decrypt the message)"
	case BadRequest:
		return "transaction not permitted or supported (often a wrong or reused challenge password)"
	case BadTime:
		return "the message time was not close enough to the server's time"
	case BadCertID:
		return "no certificate could be identified matching the criteria"
	}
	return "no reason given"
}

// TransactionID identifies one enrollment across PKCSReq and CertPoll.
type TransactionID string

// NewTransactionID returns a random transaction ID (32 hex digits). RFC 8894
// suggests a hash of the public key; a random one stays unique when cert-manager
// reuses a key, which a hash would not.
func NewTransactionID(rnd io.Reader) (TransactionID, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	b := make([]byte, 16)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return "", err
	}
	return TransactionID(hex.EncodeToString(b)), nil
}

// SCEP's authenticated attributes (RFC 8894 section 3.2.1).
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
	oidFailInfoText   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 24, 1}
)

// Signer signs a pkiMessage; the server envelopes its reply to Certificate,
// which is why the key must be RSA.
type Signer struct {
	// Certificate identifies the signer to the server: a self-signed
	// certificate for PKCSReq (RFC 8894 section 2.3), the current
	// certificate for RenewalReq.
	Certificate *x509.Certificate
	// Key signs the message and decrypts the reply.
	Key *rsa.PrivateKey
}

// NewSelfSignedSigner makes the transient self-signed certificate RFC 8894
// asks a requester to sign with, for key and the subject of its request.
// rawSubject is a DER Name (a CSR's RawSubject); nil means an empty subject
// would be refused by some servers, so a fixed one is used instead.
func NewSelfSignedSigner(key *rsa.PrivateKey, rawSubject []byte, validity time.Duration) (*Signer, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	if validity <= 0 {
		validity = 24 * time.Hour
	}
	now := time.Now()
	return selfSign(key, rawSubject, serial, now.Add(-5*time.Minute), now.Add(validity))
}

// selfSign makes the self-signed signer certificate of key for rawSubject.
func selfSign(key *rsa.PrivateKey, rawSubject []byte, serial *big.Int, notBefore, notAfter time.Time) (*Signer, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if isEmptyName(rawSubject) {
		tmpl.Subject = pkix.Name{CommonName: "SCEP requester"}
	} else {
		tmpl.RawSubject = rawSubject
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating the self-signed SCEP signer certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Signer{Certificate: cert, Key: key}, nil
}

func isEmptyName(raw []byte) bool {
	if len(raw) == 0 {
		return true
	}
	var rdn pkix.RDNSequence
	if _, err := asn1.Unmarshal(raw, &rdn); err != nil {
		return false
	}
	return len(rdn) == 0
}

// MessageOptions are the per-message choices: who signs, whom to encrypt
// to, and with which algorithms.
type MessageOptions struct {
	// Signer signs the message and receives the reply. Required.
	Signer *Signer
	// Recipient is the certificate the content is encrypted to; see
	// CACerts.Recipient. Required.
	Recipient *x509.Certificate
	// Algorithms are the cipher and digest; see Capabilities.Algorithms.
	Algorithms Algorithms
	// TransactionID is set for CertPoll (the ID of the pending request) and
	// may be set to resume a transaction; empty means a new random one.
	TransactionID TransactionID
	// Rand is the randomness source; nil means crypto/rand.
	Rand io.Reader
}

// Message is a pkiMessage ready to send, with what is needed to read its reply.
type Message struct {
	// Type is the messageType.
	Type MessageType
	// TransactionID is the transaction this message belongs to.
	TransactionID TransactionID
	// SenderNonce is the nonce the reply must echo as recipientNonce.
	SenderNonce []byte
	// Raw is the DER pkiMessage.
	Raw []byte
	// Signer signed the message; its key decrypts the reply.
	Signer *Signer
	// Algorithms are those the message was built with.
	Algorithms Algorithms

	// leafKey is the public key of the requested certificate (PKCSReq,
	// RenewalReq), used to find the leaf in the reply.
	leafKey crypto.PublicKey
	// leafSerial is the serial asked for by GetCert.
	leafSerial *big.Int
}

// NewPKCSReq wraps a DER certificate request (see NewCSR) in a PKCSReq.
func NewPKCSReq(csr []byte, opts MessageOptions) (*Message, error) {
	return newCSRMessage(TypePKCSReq, csr, opts)
}

// NewRenewalReq wraps a DER certificate request in a RenewalReq; opts.Signer
// must hold the certificate being renewed and its key.
func NewRenewalReq(csr []byte, opts MessageOptions) (*Message, error) {
	return newCSRMessage(TypeRenewalReq, csr, opts)
}

func newCSRMessage(t MessageType, csr []byte, opts MessageOptions) (*Message, error) {
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the certificate request is not signed by its own key: %w", err)
	}
	m, err := newMessage(t, csr, opts)
	if err != nil {
		return nil, err
	}
	m.leafKey = req.PublicKey
	return m, nil
}

// issuerAndSubject is CertPoll's content (RFC 8894 section 3.3.3).
type issuerAndSubject struct {
	Issuer  asn1.RawValue
	Subject asn1.RawValue
}

// NewCertPoll asks about a pending request (GetCertInitial). issuer is the
// issuing CA's subject and subject the request's, both DER Names; the
// transaction ID and signer must be those of the PKCSReq.
func NewCertPoll(issuer, subject []byte, opts MessageOptions) (*Message, error) {
	if opts.TransactionID == "" {
		return nil, errors.New("CertPoll needs the transaction ID of the pending request")
	}
	content, err := asn1.Marshal(issuerAndSubject{Issuer: asn1.RawValue{FullBytes: issuer}, Subject: asn1.RawValue{FullBytes: subject}})
	if err != nil {
		return nil, fmt.Errorf("encoding CertPoll's issuer and subject: %w", err)
	}
	return newMessage(TypeCertPoll, content, opts)
}

// NewGetCert asks for the certificate with serial issued by issuer (a DER Name).
func NewGetCert(issuer []byte, serial *big.Int, opts MessageOptions) (*Message, error) {
	m, err := newIssuerAndSerialMessage(TypeGetCert, issuer, serial, opts)
	if err != nil {
		return nil, err
	}
	m.leafSerial = serial
	return m, nil
}

// NewGetCRL asks for the CRL covering the certificate with serial issued by issuer.
func NewGetCRL(issuer []byte, serial *big.Int, opts MessageOptions) (*Message, error) {
	return newIssuerAndSerialMessage(TypeGetCRL, issuer, serial, opts)
}

func newIssuerAndSerialMessage(t MessageType, issuer []byte, serial *big.Int, opts MessageOptions) (*Message, error) {
	if serial == nil {
		return nil, fmt.Errorf("%v needs a serial number", t)
	}
	content, err := asn1.Marshal(issuerAndSerial{IssuerName: asn1.RawValue{FullBytes: issuer}, SerialNumber: serial})
	if err != nil {
		return nil, fmt.Errorf("encoding %v's issuer and serial: %w", t, err)
	}
	return newMessage(t, content, opts)
}

func newMessage(t MessageType, content []byte, opts MessageOptions) (*Message, error) {
	if opts.Signer == nil || opts.Signer.Certificate == nil || opts.Signer.Key == nil {
		return nil, errors.New("a SCEP message needs a signer certificate and RSA key")
	}
	if opts.Recipient == nil {
		return nil, errors.New("a SCEP message needs a recipient certificate")
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	txID := opts.TransactionID
	if txID == "" {
		var err error
		if txID, err = NewTransactionID(rnd); err != nil {
			return nil, err
		}
	}
	nonce := make([]byte, 16)
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, err
	}
	env, err := envelope(rnd, content, opts.Recipient, opts.Algorithms.Cipher)
	if err != nil {
		return nil, fmt.Errorf("encrypting the %v for %q: %w", t, opts.Recipient.Subject, err)
	}
	dOID, err := digestOID(opts.Algorithms.Digest)
	if err != nil {
		return nil, err
	}
	sd, err := pkcs7.NewSignedData(env)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(dOID)
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: asn1.RawValue{Tag: asn1.TagPrintableString, Bytes: []byte(txID)}},
		{Type: oidMessageType, Value: asn1.RawValue{Tag: asn1.TagPrintableString, Bytes: []byte(t)}},
		{Type: oidSenderNonce, Value: nonce},
	}
	if err := sd.AddSigner(opts.Signer.Certificate, opts.Signer.Key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		return nil, fmt.Errorf("signing the %v: %w", t, err)
	}
	raw, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("encoding the %v: %w", t, err)
	}
	return &Message{
		Type:          t,
		TransactionID: txID,
		SenderNonce:   nonce,
		Raw:           raw,
		Signer:        opts.Signer,
		Algorithms:    opts.Algorithms,
	}, nil
}
