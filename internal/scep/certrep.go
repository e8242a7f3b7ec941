package scep

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/smallstep/pkcs7"

	"github.com/scep-operator/scep-operator/internal/servertext"
)

// CertRep is a server's reply, as read from the wire. ParseCertRep fills it
// without any cryptography; Message.ReadReply verifies and decrypts it.
type CertRep struct {
	// MessageType should be TypeCertRep.
	MessageType MessageType
	// TransactionID should echo the request's. It is the server's string,
	// cleaned and capped (servertext.Clean, MaxFieldBytes), so it may be
	// shown; ReadReply compares the server's exact bytes.
	TransactionID TransactionID
	// Status is SUCCESS, FAILURE or PENDING.
	Status PKIStatus
	// FailInfo says why, on FAILURE.
	FailInfo FailInfo
	// FailInfoText is the server's own words on FAILURE (RFC 8894's
	// failInfoText attribute), when it sent any: cleaned (printable, one
	// line) and capped at servertext.MaxFieldBytes, since it ends up in a
	// CertificateRequest's status and Events.
	FailInfoText string
	// HResult is the Windows error code NDES sends with a FAILURE
	// (Microsoft's attribute 1.3.6.1.4.1.311.21.33) instead of a
	// failInfoText; zero when none came.
	HResult HResult
	// SenderNonce is the server's nonce.
	SenderNonce []byte
	// RecipientNonce should echo the request's senderNonce.
	RecipientNonce []byte
	// Certificates are the issued certificate and its chain, leaf first,
	// after a successful ReadReply.
	Certificates []*x509.Certificate
	// CRL is the revocation list a GetCRL asked for.
	CRL *x509.RevocationList

	p7 *pkcs7.PKCS7
	// rawTransactionID is the transactionID exactly as the server sent it.
	rawTransactionID string
}

// ParseCertRep reads the structure and the authenticated attributes of a
// pkiMessage. It checks nothing about who signed it; see Message.ReadReply.
// The structure's nesting and size are bounded (CheckBER) before it is
// parsed, and the server's strings are cleaned and capped.
func ParseCertRep(der []byte) (rep *CertRep, err error) {
	// pkcs7 parses without recovering; a malformed reply must be an error,
	// never a crash of the operator.
	defer func() {
		if r := recover(); r != nil {
			rep, err = nil, fmt.Errorf("malformed pkiMessage: %v", r)
		}
	}()
	if len(der) == 0 {
		return nil, errors.New("empty pkiMessage")
	}
	p7, err := parsePKCS7(der)
	if err != nil {
		return nil, fmt.Errorf("reply is not a PKCS#7 pkiMessage: %w", err)
	}
	if len(p7.Signers) == 0 {
		return nil, errors.New("reply is not signed (no SignerInfo)")
	}
	rep = &CertRep{p7: p7}
	var s string
	if err := p7.UnmarshalSignedAttribute(oidMessageType, &s); err != nil {
		return nil, fmt.Errorf("reply has no messageType attribute: %w", err)
	}
	rep.MessageType = MessageType(servertext.Clean(s, servertext.MaxFieldBytes))
	if err := p7.UnmarshalSignedAttribute(oidTransactionID, &s); err != nil {
		return nil, fmt.Errorf("reply has no transactionID attribute: %w", err)
	}
	rep.rawTransactionID = s
	rep.TransactionID = TransactionID(servertext.Clean(s, servertext.MaxFieldBytes))
	if err := p7.UnmarshalSignedAttribute(oidPKIStatus, &s); err != nil {
		return nil, fmt.Errorf("reply has no pkiStatus attribute: %w", err)
	}
	rep.Status = PKIStatus(servertext.Clean(s, servertext.MaxFieldBytes))
	if rep.Status == StatusFailure {
		if err := p7.UnmarshalSignedAttribute(oidFailInfo, &s); err == nil {
			// A code, normally one digit; FailInfo.String caps what it shows.
			rep.FailInfo = FailInfo(servertext.Clean(s, servertext.MaxFieldBytes))
		}
		if err := p7.UnmarshalSignedAttribute(oidFailInfoText, &s); err == nil {
			rep.FailInfoText = servertext.Clean(s, servertext.MaxFieldBytes)
		}
		if err := p7.UnmarshalSignedAttribute(oidMSErrorCode, &s); err == nil {
			rep.HResult = parseHResult(s)
		}
	}
	// Nonces are optional in some servers' FAILURE replies; their absence is
	// judged by ReadReply.
	_ = p7.UnmarshalSignedAttribute(oidSenderNonce, &rep.SenderNonce)
	_ = p7.UnmarshalSignedAttribute(oidRecipientNonce, &rep.RecipientNonce)
	return rep, nil
}

// IssuedBy is the issuer of the issued certificate (Certificates[0]) as
// text for an Event or a status: the server's words, so cleaned and capped
// at servertext.MaxFieldBytes. It is "" before a successful ReadReply.
func (r *CertRep) IssuedBy() string {
	if len(r.Certificates) == 0 {
		return ""
	}
	return servertext.Clean(r.Certificates[0].Issuer.String(), servertext.MaxFieldBytes)
}

// embedded returns the certificates the reply itself carries.
func (r *CertRep) embedded() []*x509.Certificate { return r.p7.Certificates }

// VerifySignature checks that one of trusted (the GetCACert certificates:
// the CA and its RA certificates, after pinning) signed the reply.
//
// A certificate the reply carries counts only when it is one of trusted.
// Accepting any certificate a trusted CA issued would let whoever holds one
// (any workload this CA enrolled, a tenant among them) sign CertReps, and
// with a network position answer PENDING or FAILURE for anybody's
// transaction, or replay a SUCCESS. RFC 8894 section 3.3.2: the reply is
// signed by the CA or an RA, and the client learns both from GetCACert.
func (r *CertRep) VerifySignature(trusted []*x509.Certificate) (err error) {
	defer func() {
		if rec := recover(); rec != nil {
			err = fmt.Errorf("malformed pkiMessage signature: %v", rec)
		}
	}()
	candidates := trusted
	saved := r.p7.Certificates
	defer func() { r.p7.Certificates = saved }()
	var lastErr error
	for _, c := range candidates {
		r.p7.Certificates = []*x509.Certificate{c}
		if lastErr = r.p7.Verify(); lastErr == nil {
			return nil
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no certificate to verify with")
	}
	return fmt.Errorf("CertRep signature does not verify against the server's CA/RA certificates: %w", lastErr)
}

// FailureError is a CertRep with pkiStatus FAILURE: the server refused the
// request. It is permanent for this request.
type FailureError struct {
	// FailInfo is the server's reason code.
	FailInfo FailInfo
	// Text is the server's own explanation, if it sent one, cleaned and
	// capped (see CertRep.FailInfoText).
	Text string
	// HResult is NDES's error code, when it sent one (see CertRep.HResult).
	HResult HResult
	// TransactionID is the refused transaction.
	TransactionID TransactionID
}

func (e *FailureError) Error() string {
	msg := fmt.Sprintf("SCEP server refused the request: %s (%s)", e.FailInfo, e.FailInfo.Meaning())
	if e.HResult != 0 {
		msg += fmt.Sprintf(": NDES error %s", e.HResult)
		if m := e.HResult.Meaning(); m != "" {
			msg += ", " + m
		}
	}
	if e.Text != "" {
		// Quoted: the server's words, set apart from ours.
		msg += ": the server says " + servertext.Quote(e.Text, servertext.MaxFieldBytes)
	}
	return msg
}

// ReplyError says that a reply broke the protocol (wrong nonce, wrong
// transaction, bad signature, undecryptable). The request may be retried.
type ReplyError struct {
	// Reason is a short machine-readable cause, e.g. "RecipientNonceMismatch".
	Reason string
	// Err is the detail.
	Err error
}

func (e *ReplyError) Error() string { return "invalid SCEP reply: " + e.Err.Error() }

// Unwrap returns the detail.
func (e *ReplyError) Unwrap() error { return e.Err }

func replyErr(reason string, format string, args ...any) error {
	return &ReplyError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ReadReply parses, verifies and decrypts the server's reply to m. trusted
// are the GetCACert certificates (after pinning). The result's Status says
// whether the certificate was issued (Certificates set: the leaf, then its
// issuers from the reply or from trusted) or is pending; a FAILURE is returned as a *FailureError alongside the CertRep.
// Protocol violations are *ReplyError.
func (m *Message) ReadReply(der []byte, trusted []*x509.Certificate) (*CertRep, error) {
	rep, err := ParseCertRep(der)
	if err != nil {
		return nil, &ReplyError{Reason: "Malformed", Err: err}
	}
	if err := rep.VerifySignature(trusted); err != nil {
		return nil, &ReplyError{Reason: "BadSignature", Err: err}
	}
	if rep.MessageType != TypeCertRep {
		return nil, replyErr("WrongMessageType", "messageType is %v, want CertRep", rep.MessageType)
	}
	if rep.rawTransactionID != string(m.TransactionID) {
		return nil, replyErr("TransactionIDMismatch", "transactionID %s does not match the request's %q", servertext.Quote(string(rep.TransactionID), 64), m.TransactionID)
	}
	if !bytes.Equal(rep.RecipientNonce, m.SenderNonce) {
		return nil, replyErr("RecipientNonceMismatch", "recipientNonce %x does not echo the request's senderNonce %x (a replayed or misrouted reply)", rep.RecipientNonce, m.SenderNonce)
	}
	switch rep.Status {
	case StatusPending:
		return rep, nil
	case StatusFailure:
		return rep, &FailureError{FailInfo: rep.FailInfo, Text: rep.FailInfoText, HResult: rep.HResult, TransactionID: rep.TransactionID}
	case StatusSuccess:
	default:
		return nil, replyErr("UnknownStatus", "unknown pkiStatus %v", rep.Status)
	}
	if err := rep.decrypt(m, trusted); err != nil {
		return nil, &ReplyError{Reason: "DecryptFailed", Err: err}
	}
	return rep, nil
}

func (r *CertRep) decrypt(m *Message, caCerts []*x509.Certificate) (err error) {
	defer func() {
		if rec := recover(); rec != nil {
			err = fmt.Errorf("malformed enveloped content: %v", rec)
		}
	}()
	if len(r.p7.Content) == 0 {
		return errors.New("SUCCESS reply carries no content")
	}
	env, err := parsePKCS7(r.p7.Content)
	if err != nil {
		return fmt.Errorf("reply content is not PKCS#7 EnvelopedData: %w", err)
	}
	plain, err := env.Decrypt(m.Signer.Certificate, m.Signer.Key)
	if err != nil {
		return fmt.Errorf("decrypting the reply with the request's signer key: %w", err)
	}
	inner, err := parsePKCS7(plain)
	if err != nil {
		return fmt.Errorf("decrypted reply is not a degenerate PKCS#7: %w", err)
	}
	if m.Type == TypeGetCRL {
		if len(inner.CRLs) == 0 {
			return errors.New("GetCRL reply holds no CRL")
		}
		der, err := asn1.Marshal(inner.CRLs[0])
		if err != nil {
			return err
		}
		if r.CRL, err = x509.ParseRevocationList(der); err != nil {
			return fmt.Errorf("parsing the CRL: %w", err)
		}
		return nil
	}
	if len(inner.Certificates) == 0 {
		return errors.New("SUCCESS reply holds no certificate")
	}
	chain, err := orderChain(inner.Certificates, caCerts, m.leafKey, m.leafSerial)
	if err != nil {
		return err
	}
	r.Certificates = chain
	return nil
}

// orderChain returns the requested certificate followed by its issuers, as
// far as pool (the reply's certificates and the server's CA certificates)
// holds them. Servers differ: MicroMDM sends the leaf alone, step-ca the leaf
// and its RA certificate, NDES the leaf and the CA. Certificates off the
// leaf's path are left out.
func orderChain(certs, pool []*x509.Certificate, leafKey crypto.PublicKey, leafSerial *big.Int) ([]*x509.Certificate, error) {
	var leaf *x509.Certificate
	for _, c := range certs {
		if (leafKey != nil && publicKeysEqual(c.PublicKey, leafKey)) || (leafSerial != nil && c.SerialNumber.Cmp(leafSerial) == 0) {
			leaf = c
			break
		}
	}
	if leaf == nil {
		if leafKey != nil {
			return nil, errors.New("the reply's certificates do not hold the requested public key")
		}
		for _, c := range certs {
			if !c.IsCA {
				leaf = c
				break
			}
		}
		if leaf == nil {
			leaf = certs[0]
		}
	}
	chain := []*x509.Certificate{leaf}
	candidates := append(append([]*x509.Certificate(nil), certs...), pool...)
	for cur := leaf; len(chain) <= len(candidates); {
		if bytes.Equal(cur.RawIssuer, cur.RawSubject) {
			break // self-signed: the root
		}
		var next *x509.Certificate
		for _, c := range candidates {
			if bytes.Equal(cur.RawIssuer, c.RawSubject) && !c.Equal(cur) && cur.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		chain = append(chain, next)
		cur = next
	}
	return chain, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	// Every public key type of the standard library has Equal.
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
