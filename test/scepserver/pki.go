package scepserver

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep/x509util"
)

// SCEP authenticated attributes (RFC 8894 section 3.2.1, the VeriSign arc)
// and failInfoText (section 3.2.1.4, id-scep-failInfoText under id-pkix 24).
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
	oidFailInfoText   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 24, 1}
	// oidMSError is the Microsoft attribute NDES adds to a FAILURE: the
	// HRESULT as a signed decimal string (sscep issue 59).
	oidMSError = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 21, 33}
)

// messageType and pkiStatus values (RFC 8894 section 3.2.1.2 and 3.2.1.3).
const (
	typeCertRep    = "3"
	typeRenewalReq = "17"
	typeUpdateReq  = "18"
	typePKCSReq    = "19"
	typeCertPoll   = "20"
	typeGetCert    = "21"
	typeGetCRL     = "22"

	statusSuccess = "0"
	statusFailure = "2"
	statusPending = "3"
)

// messageTypeName maps messageType values to the names smallstep and
// MicroMDM use; smallstep's MessageType.String panics on unknown values.
func messageTypeName(v string) string {
	switch v {
	case typeCertRep:
		return "CertRep"
	case typeRenewalReq:
		return "RenewalReq"
	case typeUpdateReq:
		return "UpdateReq"
	case typePKCSReq:
		return "PKCSReq"
	case typeCertPoll:
		return "CertPoll"
	case typeGetCert:
		return "GetCert"
	case typeGetCRL:
		return "GetCRL"
	}
	return "unknown(" + v + ")"
}

func statusName(v string) string {
	switch v {
	case statusSuccess:
		return "SUCCESS"
	case statusFailure:
		return "FAILURE"
	case statusPending:
		return "PENDING"
	}
	return v
}

// pkiMessage is an incoming request as far as it can be read without keys.
type pkiMessage struct {
	p7            *pkcs7.PKCS7
	typ           string
	transactionID string
	senderNonce   []byte
	signer        *x509.Certificate
	digest        asn1.ObjectIdentifier
	cipher        asn1.ObjectIdentifier
	env           *envelopedData // nil if the content is no envelope
	logIndex      int            // into Server.pkiLog
	err           error          // why it is not a pkiMessage at all
}

// record parses and logs an incoming pkiMessage before any fault or policy
// applies, so tests see what the client sent even when the reply fails.
func (s *Server) record(method, remoteAddr string, der []byte) *pkiMessage {
	msg := parsePKIMessage(der)
	s.mu.Lock()
	defer s.mu.Unlock()
	if msg.err != nil {
		s.messages["malformed"]++
		return msg
	}
	name := messageTypeName(msg.typ)
	s.messages[name]++
	req := PKIRequest{
		Method:            method,
		MessageType:       name,
		TransactionID:     msg.transactionID,
		SenderNonce:       msg.senderNonce,
		Digest:            msg.digest,
		ContentEncryption: msg.cipher,
		Signer:            msg.signer,
		FailInfo:          -1,
		At:                time.Now(),
		RemoteAddr:        remoteAddr,
	}
	if msg.env != nil {
		if len(msg.env.RecipientInfos) > 0 {
			req.KeyEncryption = msg.env.RecipientInfos[0].KeyEncryptionAlgorithm.Algorithm
		}
		req.Recipients = s.matchRecipientsLocked(msg.env.RecipientInfos)
		// Certificates served before a rollover are still this server's.
		req.Stray = len(req.Recipients) == 0 && len(addressedTo(msg.env.RecipientInfos, s.retired)) == 0
	}
	msg.logIndex = len(s.pkiLog)
	s.pkiLog = append(s.pkiLog, req)
	return msg
}

func parsePKIMessage(der []byte) (msg *pkiMessage) {
	msg = &pkiMessage{}
	defer func() {
		// pkcs7's BER handling has panicked on hostile input before.
		if r := recover(); r != nil {
			msg.err = fmt.Errorf("parse pkiMessage: panic: %v", r)
		}
	}()
	p7, err := pkcs7.Parse(der)
	if err != nil {
		msg.err = fmt.Errorf("parse pkiMessage: %w", err)
		return msg
	}
	msg.p7 = p7
	if err := p7.UnmarshalSignedAttribute(oidMessageType, &msg.typ); err != nil {
		msg.err = fmt.Errorf("pkiMessage has no messageType: %w", err)
		return msg
	}
	// transactionID and senderNonce are mandatory, but their absence is for
	// the policy to answer, not a reason to count the message as malformed.
	_ = p7.UnmarshalSignedAttribute(oidTransactionID, &msg.transactionID)
	_ = p7.UnmarshalSignedAttribute(oidSenderNonce, &msg.senderNonce)
	msg.signer = p7.GetOnlySigner()
	if len(p7.Signers) > 0 {
		msg.digest = p7.Signers[0].DigestAlgorithm.Algorithm
	}
	if env, err := parseEnvelope(p7.Content); err == nil {
		msg.env = env
		msg.cipher = env.EncryptedContentInfo.ContentEncryptionAlgorithm.Algorithm
	}
	return msg
}

// matchRecipientsLocked returns the server certificates among the envelope's
// recipients; s.mu must be held.
func (s *Server) matchRecipientsLocked(ris []recipientInfo) []*x509.Certificate {
	candidates := []*x509.Certificate{s.CA}
	if s.ra != nil {
		candidates = append(candidates, s.ra.sign, s.ra.encrypt)
	}
	return addressedTo(ris, candidates)
}

// addressedTo returns the certificates among certs that the envelope's
// recipients name.
func addressedTo(ris []recipientInfo, certs []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		for _, ri := range ris {
			if ri.IssuerAndSerial.matches(c) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// outcome is what the server decided to answer in a CertRep.
type outcome struct {
	status   string
	failInfo int
	text     string              // failInfoText for this FAILURE, else Behavior.FailInfoText
	certs    []*x509.Certificate // SUCCESS for PKCSReq, RenewalReq, CertPoll, GetCert
	crl      []byte              // SUCCESS for GetCRL
}

func failure(info int) outcome { return outcome{status: statusFailure, failInfo: info} }

// transaction is an enrolment the server remembers by transactionID, so
// CertPoll (and a resent PKCSReq) find it.
type transaction struct {
	csr      *x509.CertificateRequest
	state    string // statusPending, statusSuccess or statusFailure
	polls    int
	cert     *x509.Certificate
	failInfo int
	failText string // failInfoText given to Reject
}

// pkiOperation decides and builds the answer to one pkiMessage. It holds
// s.mu throughout: requests are serialized, which a test server can afford.
func (s *Server) pkiOperation(b Behavior, msg *pkiMessage) reply {
	if msg.err != nil {
		return textReply(http.StatusBadRequest, "scepserver: "+msg.err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	if msg.signer == nil {
		s.pkiLog[msg.logIndex].Refused = "no single signer certificate"
		return s.certRepLocked(b, msg, failure(BadMessageCheck))
	}
	if err := msg.p7.Verify(); err != nil {
		s.pkiLog[msg.logIndex].Refused = "the signature: " + err.Error()
		return s.certRepLocked(b, msg, failure(BadMessageCheck))
	}
	cert, key := s.CA, s.CAKey
	if b.RASplit {
		ra, err := s.raLocked()
		if err != nil {
			return textReply(http.StatusInternalServerError, err.Error())
		}
		cert, key = ra.encrypt, ra.encryptKey
	}
	plain, err := decrypt(msg.p7.Content, cert, key)
	if err != nil {
		if b.DecryptFailureStatus != 0 {
			return textReply(b.DecryptFailureStatus, "cannot decrypt the client's PKCS7 message (0x80090005): "+err.Error())
		}
		s.pkiLog[msg.logIndex].Refused = "the envelope: " + err.Error()
		return s.certRepLocked(b, msg, failure(BadMessageCheck))
	}

	var out outcome
	switch {
	case msg.typ == typePKCSReq || msg.typ == typeRenewalReq || msg.typ == typeUpdateReq:
		// Decides FailInfo itself, after recording the CSR for the test.
		out = s.enrolLocked(b, msg, plain)
	case b.FailInfo != nil && !b.Reject:
		out = failure(*b.FailInfo)
	default:
		out = s.queryLocked(b, msg, plain)
	}
	return s.certRepLocked(b, msg, out)
}

// queryLocked answers the messages that ask about something already there.
func (s *Server) queryLocked(b Behavior, msg *pkiMessage, plain []byte) outcome {
	switch msg.typ {
	case typeCertPoll:
		return s.pollLocked(b, msg)
	case typeGetCert:
		return s.getCertLocked(plain)
	case typeGetCRL:
		return s.getCRLLocked()
	}
	return failure(BadRequest)
}

func (s *Server) enrolLocked(b Behavior, msg *pkiMessage, plain []byte) outcome {
	csr, err := x509.ParseCertificateRequest(plain)
	if err != nil {
		return failure(BadRequest)
	}
	challenge, _ := x509util.ParseChallengePassword(plain)
	s.pkiLog[msg.logIndex].CSR = csr
	s.pkiLog[msg.logIndex].ChallengePassword = challenge
	if b.ResendIsPoll && msg.typ == typePKCSReq && s.txns[msg.transactionID] != nil {
		return s.pollLocked(b, msg)
	}
	if err := csr.CheckSignature(); err != nil {
		s.pkiLog[msg.logIndex].Refused = "the CSR's signature: " + err.Error()
		return failure(BadMessageCheck)
	}
	switch {
	case b.FailInfo != nil && !b.Reject:
		return failure(*b.FailInfo)
	case b.VerifyChallenge != nil && msg.typ == typePKCSReq:
		if ok, text := b.VerifyChallenge(challenge, csr); !ok {
			out := failure(BadRequest)
			out.text = text
			return out
		}
	case b.Challenge != "" && msg.typ == typePKCSReq && challenge != b.Challenge:
		return failure(BadRequest)
	}
	if t := s.txns[msg.transactionID]; t != nil && t.state == statusPending {
		// A resent request for a transaction still waiting is not a poll.
		return outcome{status: statusPending}
	}
	t := &transaction{csr: csr, state: statusPending}
	s.txns[msg.transactionID] = t
	if b.PendingForever || b.Pending > 0 {
		return outcome{status: statusPending}
	}
	return s.finishLocked(b, t)
}

func (s *Server) pollLocked(b Behavior, msg *pkiMessage) outcome {
	t := s.txns[msg.transactionID]
	if t == nil {
		return failure(BadCertID)
	}
	switch t.state {
	case statusSuccess:
		return outcome{status: statusSuccess, certs: []*x509.Certificate{t.cert}}
	case statusFailure:
		out := failure(t.failInfo)
		out.text = t.failText
		return out
	}
	t.polls++
	if b.PendingForever || t.polls < b.Pending {
		return outcome{status: statusPending}
	}
	return s.finishLocked(b, t)
}

// finishLocked ends a transaction: issued, or rejected under Reject.
func (s *Server) finishLocked(b Behavior, t *transaction) outcome {
	if b.Reject {
		t.state, t.failInfo = statusFailure, BadRequest
		if b.FailInfo != nil {
			t.failInfo = *b.FailInfo
		}
		return failure(t.failInfo)
	}
	crt, err := s.issueLocked(b, t.csr)
	if err != nil {
		return failure(BadRequest)
	}
	t.state, t.cert = statusSuccess, crt
	return outcome{status: statusSuccess, certs: []*x509.Certificate{crt}}
}

func (s *Server) issueLocked(b Behavior, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	validity := b.Validity
	if validity == 0 {
		validity = 24 * time.Hour
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        csr.Subject,
		DNSNames:       csr.DNSNames,
		EmailAddresses: csr.EmailAddresses,
		IPAddresses:    csr.IPAddresses,
		URIs:           csr.URIs,
		NotBefore:      now.Add(-time.Minute),
		NotAfter:       now.Add(validity),
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	// Like AD CS with a subject-supplied template, copy the requested
	// subjectAltName extension as it is, so otherNames (UPN) survive, which
	// crypto/x509's parsed fields would drop.
	for _, e := range csr.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			tmpl.DNSNames, tmpl.EmailAddresses, tmpl.IPAddresses, tmpl.URIs = nil, nil, nil, nil
			tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, e)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.CA, csr.PublicKey, s.CAKey)
	if err != nil {
		return nil, err
	}
	crt, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	s.issued = append(s.issued, crt)
	return crt, nil
}

// getCertLocked answers GetCert, whose envelope holds the wanted
// certificate's IssuerAndSerialNumber (RFC 8894 section 3.3.4).
func (s *Server) getCertLocked(plain []byte) outcome {
	var ias issuerAndSerial
	if _, err := asn1.Unmarshal(plain, &ias); err != nil {
		return failure(BadRequest)
	}
	for _, c := range s.issued {
		if ias.matches(c) {
			return outcome{status: statusSuccess, certs: []*x509.Certificate{c}}
		}
	}
	return failure(BadCertID)
}

// getCRLLocked answers GetCRL with a fresh CRL of the CA, listing what
// Revoke revoked (RFC 8894 section 3.3.5).
func (s *Server) getCRLLocked() outcome {
	s.crlNumber++
	now := time.Now()
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(s.crlNumber),
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(24 * time.Hour),
		RevokedCertificateEntries: s.revoked,
	}, s.CA, s.CAKey)
	if err != nil {
		return failure(BadRequest)
	}
	return outcome{status: statusSuccess, crl: crl}
}

// certRepLocked signs the CertRep for out, applying the tampering knobs.
func (s *Server) certRepLocked(b Behavior, msg *pkiMessage, out outcome) reply {
	rec := &s.pkiLog[msg.logIndex]
	rec.Status = statusName(out.status)
	if out.status == statusFailure {
		rec.FailInfo = out.failInfo
	}

	signerCert, signerKey := s.CA, crypto.PrivateKey(s.CAKey)
	if b.RASplit {
		ra, err := s.raLocked()
		if err != nil {
			return textReply(http.StatusInternalServerError, err.Error())
		}
		signerCert, signerKey = ra.sign, ra.signKey
	}

	var content []byte
	if out.status == statusSuccess {
		certs := out.certs
		if b.ChainInReply && len(certs) > 0 {
			certs = append(certs[:len(certs):len(certs)], s.CA)
		}
		deg, err := degenerate(certs, out.crl)
		if err != nil {
			return textReply(http.StatusInternalServerError, err.Error())
		}
		cipher := b.ReplyCipher
		if cipher == nil {
			cipher = msg.cipher
		}
		// RFC 8894 section 3.3.2: the reply is enveloped to the
		// certificate that signed the request.
		content, err = envelope(deg, msg.signer, cipher, b.ReplyOAEPForAES && isAES(msg.cipher))
		if err != nil {
			return textReply(http.StatusInternalServerError, err.Error())
		}
	} else if b.ZeroByteContent {
		content = []byte{0}
	}
	digest := replyDigest(b.ReplyDigest, msg.digest)

	msgType, tid, recipientNonce := typeCertRep, msg.transactionID, msg.senderNonce
	if b.WrongMessageType {
		msgType = typePKCSReq
	}
	if b.WrongTransactionID {
		tid = "not-" + tid
	}
	if b.WrongRecipientNonce {
		recipientNonce = nonce()
	}
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: tid},
		{Type: oidMessageType, Value: msgType},
		{Type: oidPKIStatus, Value: out.status},
		{Type: oidSenderNonce, Value: nonce()},
		{Type: oidRecipientNonce, Value: recipientNonce},
	}
	if out.status == statusFailure {
		attrs = append(attrs, pkcs7.Attribute{Type: oidFailInfo, Value: strconv.Itoa(out.failInfo)})
		text := out.text
		if text == "" {
			text = b.FailInfoText
		}
		msError := ""
		if b.FailureAttrs != nil {
			text, msError = b.FailureAttrs(out.failInfo, text)
		}
		if text != "" {
			attrs = append(attrs, pkcs7.Attribute{Type: oidFailInfoText, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(text)}})
		}
		if msError != "" {
			attrs = append(attrs, pkcs7.Attribute{Type: oidMSError, Value: asn1.RawValue{Tag: asn1.TagPrintableString, Bytes: []byte(msError)}})
		}
	}

	if !b.Unsigned && (b.ReplyRSAEncryption || b.ReplyNoCertificates || b.ReplyNoSigningTime) {
		der, err := signReply(content, signerCert, signerKey, digest, attrs, signOptions{
			rsaEncryption: b.ReplyRSAEncryption,
			noCerts:       b.ReplyNoCertificates,
			noSigningTime: b.ReplyNoSigningTime,
			badSignature:  b.BadSignature,
		})
		if err != nil {
			return textReply(http.StatusInternalServerError, err.Error())
		}
		return reply{status: http.StatusOK, contentType: "application/x-pki-message", body: der}
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return textReply(http.StatusInternalServerError, err.Error())
	}
	sd.SetDigestAlgorithm(digest)
	if b.Unsigned {
		sd.AddCertificate(signerCert)
	} else {
		if err := sd.AddSigner(signerCert, signerKey, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
			return textReply(http.StatusInternalServerError, err.Error())
		}
		if b.BadSignature {
			sig := sd.GetSignedData().SignerInfos[0].EncryptedDigest
			sig[len(sig)/2] ^= 0xff
		}
	}
	der, err := sd.Finish()
	if err != nil {
		return textReply(http.StatusInternalServerError, err.Error())
	}
	return reply{status: http.StatusOK, contentType: "application/x-pki-message", body: der}
}

// replyDigest answers in the client's digest when pkcs7 can sign with it.
func replyDigest(configured, requested asn1.ObjectIdentifier) asn1.ObjectIdentifier {
	if configured != nil {
		return configured
	}
	for _, d := range []asn1.ObjectIdentifier{pkcs7.OIDDigestAlgorithmSHA1, pkcs7.OIDDigestAlgorithmSHA256, pkcs7.OIDDigestAlgorithmSHA384, pkcs7.OIDDigestAlgorithmSHA512} {
		if d.Equal(requested) {
			return d
		}
	}
	return pkcs7.OIDDigestAlgorithmSHA256
}

// isAES reports whether a content-encryption OID is an AES mode.
func isAES(oid asn1.ObjectIdentifier) bool {
	aes := asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1}
	return len(oid) == len(aes)+1 && slices.Equal(oid[:len(aes)], aes)
}

func nonce() []byte {
	n := make([]byte, 16)
	rand.Read(n)
	return n
}

func textReply(status int, text string) reply {
	return reply{status: status, contentType: "text/plain; charset=utf-8", body: []byte(text)}
}

// decrypt opens the pkcsPKIEnvelope inside a pkiMessage's SignedData.
func decrypt(content []byte, cert *x509.Certificate, key crypto.PrivateKey) ([]byte, error) {
	if len(content) == 0 {
		return nil, errors.New("pkiMessage has no pkcsPKIEnvelope")
	}
	env, err := pkcs7.Parse(content)
	if err != nil {
		return nil, err
	}
	plain, err := env.Decrypt(cert, key)
	if err != nil {
		return nil, err
	}
	return plain, nil
}

// matches reports whether ias names crt.
func (ias issuerAndSerial) matches(crt *x509.Certificate) bool {
	return ias.SerialNumber != nil && crt.SerialNumber.Cmp(ias.SerialNumber) == 0 &&
		bytes.Equal(crt.RawIssuer, ias.IssuerName.FullBytes)
}
