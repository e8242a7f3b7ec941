// Package scepserver is an in-process SCEP server (RFC 8894) for client tests.
// By default it behaves: it issues certificates from its own RSA CA for
// PKCSReq and RenewalReq, answers CertPoll, GetCert and GetCRL, and replies
// with CertReps signed by its signer and enveloped to the request's signer
// certificate. On command it does what real servers do on bad days and will
// not do on demand: NDES-style RA certificates, pending approval, failures
// with reasons, tampered or unsigned replies, HTML error pages, IIS limits,
// slow or failing HTTP.
//
// It speaks CMS itself, on top of smallstep/pkcs7 for parsing, signing and
// decrypting; the reply envelope is built here, so the package never touches
// pkcs7's package-level ContentEncryptionAlgorithm, which a client under
// test in the same process may be setting. It imports nothing from this
// module's internal packages: it is a peer of our client, not a mirror of it.
package scepserver

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// SCEP operations, as they appear in the operation query parameter.
const (
	OpGetCACaps    = "GetCACaps"
	OpGetCACert    = "GetCACert"
	OpPKIOperation = "PKIOperation"
)

// failInfo values of RFC 8894 section 3.2.1.4, for Behavior.FailInfo
// (e.g. FailInfo: new(scepserver.BadRequest)).
const (
	BadAlg          = 0
	BadMessageCheck = 1
	BadRequest      = 2
	BadTime         = 3
	BadCertID       = 4
)

// defaultCaps is a modern server that wants POST, AES and SHA-2.
var defaultCaps = []string{"POSTPKIOperation", "AES", "SHA-256", "SHA-512", "Renewal", "SCEPStandard"}

// Behavior says how the server answers. The zero value is a well-behaved
// RFC 8894 server with the default capabilities (see Caps), no challenge and
// no RA. Change it at
// runtime with Server.Set; each request sees one consistent snapshot.
type Behavior struct {
	// Caps is the GetCACaps answer, one per line; nil means POSTPKIOperation,
	// AES, SHA-256, SHA-512, Renewal and SCEPStandard. With GetOnly and nil
	// Caps, POSTPKIOperation and SCEPStandard (which implies POST) are
	// left out; set Caps explicitly to model a server that lies about POST.
	Caps []string
	// NoCaps makes GetCACaps fail, as servers from before GetCACaps
	// existed (old NDES) do; NoCapsAnswer says how.
	NoCaps bool
	// NoCapsAnswer is how GetCACaps fails under NoCaps: HTTP 500 (the
	// zero value), a connection closed without an answer, or an empty 200.
	NoCapsAnswer NoCapsAnswer
	// GetOnly refuses POST with 405 Method Not Allowed.
	GetOnly bool
	// PostEmptyOK answers every POST with HTTP 200 and an empty body
	// without processing it, as NDES on Windows Server 2012 R2 is reported
	// to do although it announces POSTPKIOperation.
	PostEmptyOK bool
	// GETURLSafeBase64 also accepts a GET PKIOperation message in the
	// URL-safe base64 alphabet (RFC 4648 section 5), as MicroMDM's client
	// sends it; by default only the standard alphabet is decoded.
	GETURLSafeBase64 bool
	// MaxQueryBytes, if positive, answers any GET whose raw query string is
	// longer with IIS's "HTTP Error 404.15 - Query string too long" page
	// (NDES on IIS: 2048 by default) instead of 414.
	MaxQueryBytes int

	// RASplit makes the server look like NDES: GetCACert returns a PKCS#7
	// bundle of the CA, an RA signing certificate (digitalSignature only)
	// and an RA encryption certificate (keyEncipherment only), both RSA and
	// issued by the CA. CertReps are signed by the RA signing certificate and
	// only the RA encryption key decrypts requests: a request enveloped only
	// to the CA or to the RA signing certificate cannot be decrypted (see
	// DecryptFailureStatus for the answer).
	RASplit bool
	// CACertRAFirst orders GetCACert's bundle as NDES does: RA signing,
	// RA encryption, CA (by default: CA, RA signing, RA encryption).
	CACertRAFirst bool
	// WrongContentType swaps the GetCACert content types: a single DER
	// certificate comes as application/x-x509-ca-ra-cert and a bundle as
	// application/x-x509-ca-cert, so only a client that sniffs copes.
	WrongContentType bool

	// Challenge, if set, is required as the CSR's challengePassword in
	// PKCSReq (not RenewalReq, which the current certificate authorizes);
	// a mismatch answers FAILURE/badRequest.
	Challenge string
	// VerifyChallenge, if set, replaces Challenge: it is called with the
	// challengePassword ("" if none) and the CSR of every PKCSReq that
	// decrypted and whose CSR signature is valid, before any transaction is
	// created. ok=false answers FAILURE/badRequest, with text (if not
	// empty, else FailInfoText) as failInfoText. It runs with the server's
	// lock held, so it must not call this Server's methods; it may keep
	// state of its own (e.g. consume a one-time password, as NDES does).
	VerifyChallenge func(password string, csr *x509.CertificateRequest) (ok bool, text string)
	// Validity is the lifetime of issued certificates; zero means 24 hours.
	Validity time.Duration

	// Pending answers PENDING to PKCSReq/RenewalReq and to the first
	// Pending-1 CertPolls of that transaction; the Pending-th CertPoll gets
	// the certificate (or the failure, with Reject). A PKCSReq resent for a
	// transaction still pending is answered PENDING and is not a poll, so a
	// client that re-enrols instead of polling never gets its certificate.
	Pending int
	// PendingForever answers PENDING to every request and poll.
	PendingForever bool
	// Reject ends the transaction (after Pending polls, or at once) with
	// FAILURE, failInfo FailInfo if set, else badRequest.
	Reject bool
	// FailInfo, without Reject, answers every pkiMessage with FAILURE and
	// this failInfo (BadAlg..BadCertID) at once.
	FailInfo *int
	// FailInfoText, with any FAILURE this server sends, goes into the RFC
	// 8894 failInfoText authenticated attribute (id-scep-failInfoText,
	// 1.3.6.1.5.5.7.24.1, UTF8String). Real servers rarely send it; NDES
	// explains failures only in its event log.
	FailInfoText string
	// DecryptFailureStatus is the answer to a request the server cannot
	// decrypt (e.g. enveloped to the CA while RASplit is on). Zero answers a
	// signed CertRep FAILURE/badMessageCheck as RFC 8894 asks; 500 answers
	// an HTTP error as NDES does ("cannot decrypt the client's PKCS7
	// message").
	DecryptFailureStatus int

	// FailureAttrs, if set, decides the optional attributes of every
	// FAILURE from its failInfo and reason (VerifyChallenge's text,
	// Reject's text or FailInfoText): the RFC 8894 failInfoText ("" for
	// none) and Microsoft's error code, attribute 1.3.6.1.4.1.311.21.33, a
	// signed decimal HRESULT in a PrintableString as NDES writes it (""
	// for none). Without it, the reason is the failInfoText.
	FailureAttrs func(failInfo int, reason string) (failInfoText, msError string)
	// ResendIsPoll answers a PKCSReq whose transactionID has a
	// transaction as a CertPoll of it (pending, issued or failed), before
	// its challenge is checked. By default the challenge is checked first
	// and a resend for a transaction still pending is answered PENDING.
	ResendIsPoll bool

	// ReplyRSAEncryption names the CertRep signature's algorithm
	// rsaEncryption (with the digest in digestAlgorithm), as NDES does,
	// instead of sha256WithRSAEncryption and the like.
	ReplyRSAEncryption bool
	// ReplyNoCertificates leaves the signer's certificate out of the
	// CertRep: the client must know it from GetCACert, as with NDES.
	ReplyNoCertificates bool
	// ReplyNoSigningTime leaves the signingTime attribute out, as NDES
	// does.
	ReplyNoSigningTime bool
	// ZeroByteContent makes a CertRep without envelope (FAILURE, PENDING)
	// carry one 0x00 byte as its content, as NDES's FAILURE does (sscep
	// issue 59), instead of none.
	ZeroByteContent bool
	// ReplyOAEPForAES envelopes replies to AES requests with RSAES-OAEP
	// key transport, as NDES on Windows Server 2012 R2 does.
	ReplyOAEPForAES bool

	// ReplyCipher is the content-encryption algorithm OID of CertRep
	// envelopes; nil uses whatever the request used. DES-CBC, DES-EDE3-CBC,
	// AES-128/256-CBC and AES-128/256-GCM (in smallstep/pkcs7's encoding)
	// are supported.
	ReplyCipher asn1.ObjectIdentifier
	// ReplyDigest is the digest algorithm OID of CertRep signatures; nil
	// uses the request's (SHA-1, SHA-256, SHA-384 or SHA-512), else SHA-256.
	ReplyDigest asn1.ObjectIdentifier
	// ChainInReply puts the CA certificate after the issued one in the
	// CertRep's degenerate PKCS#7, so the client receives a chain.
	ChainInReply bool
	// WrongRecipientNonce answers with a fresh random recipientNonce instead
	// of the request's senderNonce.
	WrongRecipientNonce bool
	// WrongTransactionID answers with a transactionID the client did not send.
	WrongTransactionID bool
	// WrongMessageType labels the CertRep with messageType PKCSReq (19).
	WrongMessageType bool
	// Unsigned sends the CertRep with no SignerInfo at all, so it carries
	// neither signature nor SCEP attributes.
	Unsigned bool
	// BadSignature flips bits in the CertRep's signature value.
	BadSignature bool

	// FaultOperations limits the HTTP faults below (Delay, Status,
	// HTMLStatus200, Garbage, TruncatedDER) to these operations; nil means
	// every operation.
	FaultOperations []string
	// FaultTimes, if positive, applies the HTTP faults to only the next
	// FaultTimes matching requests after Set, then behaves again: a server
	// that fails once and recovers.
	FaultTimes int
	// Delay holds every reply this long (or until the client gives up).
	Delay time.Duration
	// Status, if non-zero, answers with this HTTP status and a short text
	// body without processing the request (e.g. 500, or 503 with
	// RetryAfter).
	Status int
	// RetryAfter is sent verbatim as the Retry-After header with Status:
	// seconds ("120") or an HTTP date.
	RetryAfter string
	// HTMLStatus200 answers 200 with a text/html error page, as a proxy or
	// login portal in front of the server would, without processing.
	HTMLStatus200 bool
	// Garbage processes the request (a certificate may be issued) but
	// replaces the reply body with random bytes that do not start like DER,
	// keeping the content type.
	Garbage bool
	// TruncatedDER processes the request but cuts the DER reply
	// (GetCACert, PKIOperation) in half.
	TruncatedDER bool
}

// NoCapsAnswer is how GetCACaps fails under Behavior.NoCaps.
type NoCapsAnswer int

const (
	// NoCapsHTTP500 answers HTTP 500.
	NoCapsHTTP500 NoCapsAnswer = iota
	// NoCapsClose closes the connection without answering, as NDES on
	// Windows Server 2003 and 2008 without the GetCACaps hotfix does.
	NoCapsClose
	// NoCapsEmpty answers HTTP 200 with an empty body, as the same NDES
	// does on other installations.
	NoCapsEmpty
)

// HTTPRequest records one HTTP request as it arrived.
type HTTPRequest struct {
	// Method is GET or POST.
	Method string
	// Operation is the operation query parameter.
	Operation string
	// Message is the raw message query parameter (GetCACert's CA
	// identifier, or PKIOperation's base64 pkiMessage over GET).
	Message string
	// QueryBytes is the length of the raw query string, what IIS limits.
	QueryBytes int
	// ContentType is the request's Content-Type header.
	ContentType string
}

// PKIRequest records what the client put in one pkiMessage, so tests can
// assert the client's choices (cipher, digest, GET vs POST, signer, nonce).
type PKIRequest struct {
	// At is when the server received it.
	At time.Time
	// Method is GET or POST.
	Method string
	// MessageType is the SCEP messageType name: PKCSReq, RenewalReq,
	// UpdateReq, CertPoll, GetCert, GetCRL, or "unknown(N)".
	MessageType string
	// TransactionID is the transactionID attribute.
	TransactionID string
	// SenderNonce is the senderNonce attribute.
	SenderNonce []byte
	// Digest is the SignerInfo's digest algorithm OID.
	Digest asn1.ObjectIdentifier
	// ContentEncryption is the envelope's content-encryption algorithm OID.
	ContentEncryption asn1.ObjectIdentifier
	// KeyEncryption is the key-transport algorithm OID of the first
	// recipient (rsaEncryption or RSAES-OAEP).
	KeyEncryption asn1.ObjectIdentifier
	// Recipients are the server certificates (CA, RA signing, RA
	// encryption) the envelope was addressed to; others are left out.
	Recipients []*x509.Certificate
	// Signer is the certificate that signed the pkiMessage.
	Signer *x509.Certificate
	// CSR is the decrypted request of PKCSReq/RenewalReq/UpdateReq.
	CSR *x509.CertificateRequest
	// ChallengePassword is the CSR's challengePassword attribute.
	ChallengePassword string
	// Status is the pkiStatus the server answered: SUCCESS, FAILURE or
	// PENDING, or "" when no CertRep was sent (HTTP fault, decrypt error).
	Status string
	// FailInfo is the failInfo answered with FAILURE, else -1.
	FailInfo int
	// Refused says why a badMessageCheck was answered (the signature or
	// the envelope did not check out, and the error that said so), for a
	// test to print when an outside client is refused.
	Refused string
	// RemoteAddr is the client's address (host:port), to tell whose
	// message it was.
	RemoteAddr string
	// Stray says the message was enveloped for none of this server's
	// certificates: it was meant for another server, and a client reached
	// this one only because this server took over a port that server held.
	Stray bool
}

// String is one line for a test's log: time, type, transaction, answer,
// and why a badMessageCheck was answered.
func (r PKIRequest) String() string {
	line := fmt.Sprintf("%s %s %s from %s tx %s: %s", r.At.Format("15:04:05.000"), r.Method, r.MessageType, r.RemoteAddr, r.TransactionID, r.Status)
	if r.Status == statusName(statusFailure) {
		line += fmt.Sprintf(" (failInfo %d)", r.FailInfo)
	}
	if r.Refused != "" {
		line += "; refused: " + r.Refused
	}
	if r.Stray {
		line += " (stray: enveloped for another server)"
	}
	return line
}

// Server is a running test SCEP server.
type Server struct {
	// URL is the SCEP endpoint, http://127.0.0.1:PORT/scep; every path of
	// the listener serves SCEP, so NDES's /certsrv/mscep/mscep.dll works too.
	URL string
	// CA is the self-signed RSA CA certificate that issues everything.
	CA *x509.Certificate
	// CAKey is the CA's key, for tests that mint their own certificates
	// (e.g. a RenewalReq signer).
	CAKey *rsa.PrivateKey

	mu           sync.Mutex
	behavior     Behavior
	faultsServed int
	ra           *raCerts
	next         *nextCA
	requests     map[string]int
	messages     map[string]int
	httpLog      []HTTPRequest
	pkiLog       []PKIRequest
	retired      []*x509.Certificate // CA and RA certificates served before a rollover
	txns         map[string]*transaction
	issued       []*x509.Certificate
	revoked      []x509.RevocationListEntry
	crlNumber    int64
	srv          *httptest.Server
}

// raCerts are the NDES-style RA certificates, made on first use because most
// tests never need them and RSA key generation is slow.
type raCerts struct {
	sign, encrypt       *x509.Certificate
	signKey, encryptKey *rsa.PrivateKey
}

// Start creates a fresh CA, starts the server on a loopback httptest
// listener with the given initial behaviour, and closes it when the test ends.
func Start(t testing.TB, b Behavior) *Server {
	t.Helper()
	s, err := New(b)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// New is Start for programs (benchmarks, demos) that have no testing.TB:
// it creates a fresh CA and starts the server on a loopback listener with the
// given initial behaviour. Close stops it.
func New(b Behavior) (*Server, error) {
	// A serial of its own: an envelope names its recipient by issuer and
	// serial, and two servers' CAs of the same name and serial could not be
	// told apart (a stray sealed for another server would look like ours).
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ca, key, err := newCA(new(big.Int).Rsh(serial, 66).Int64()+1, "scepserver test CA")
	if err != nil {
		return nil, fmt.Errorf("scepserver: %w", err)
	}
	s := &Server{
		CA:       ca,
		CAKey:    key,
		behavior: b,
		requests: map[string]int{},
		messages: map[string]int{},
		txns:     map[string]*transaction{},
	}
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL + "/scep"
	return s, nil
}

// newCA makes a self-signed RSA-2048 CA valid for ten years.
func newCA(serial int64, cn string) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"scep-operator tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-sign CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA: %w", err)
	}
	return ca, key, nil
}

// RolloverCA replaces the CA with a new key and certificate (the one
// AnnounceNextCA announced, if any), as a CA renewed with a new key pair
// is: GetCACert serves the new one, requests
// encrypted to the old one can no longer be decrypted (they get FAILURE
// badMessageCheck, signed by the new CA), and what is issued from now on
// chains to the new one. The RA certificates, if any, are made anew.
// It returns the new CA certificate (s.CA is updated too).
func (s *Server) RolloverCA() (*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ca *x509.Certificate
	var key *rsa.PrivateKey
	if s.next == nil {
		var err error
		if ca, key, err = newCA(s.CA.SerialNumber.Int64()+1, s.CA.Subject.CommonName+" (rolled over)"); err != nil {
			return nil, err
		}
	}
	if s.next != nil {
		ca, key, s.next = s.next.cert, s.next.key, nil
	}
	s.retired = append(s.retired, s.CA)
	if s.ra != nil {
		s.retired = append(s.retired, s.ra.sign, s.ra.encrypt)
	}
	s.CA, s.CAKey, s.ra = ca, key, nil
	return ca, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Set changes the behaviour for the requests that follow, and restarts the
// FaultTimes count.
func (s *Server) Set(change func(b *Behavior)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(&s.behavior)
	s.faultsServed = 0
}

// RACerts returns the RA signing and RA encryption certificates that
// GetCACert serves under RASplit, creating them if needed.
func (s *Server) RACerts() (sign, encrypt *x509.Certificate, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ra, err := s.raLocked()
	if err != nil {
		return nil, nil, err
	}
	return ra.sign, ra.encrypt, nil
}

// Requests returns how many HTTP requests arrived with the given operation
// (OpGetCACaps, OpGetCACert, OpPKIOperation), whatever the answer was.
func (s *Server) Requests(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[op]
}

// PKIMessages returns how many pkiMessages of the given messageType name
// (PKCSReq, RenewalReq, UpdateReq, CertPoll, GetCert, GetCRL) arrived;
// "malformed" counts PKIOperation bodies that were no signed pkiMessage.
func (s *Server) PKIMessages(msgType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages[msgType]
}

// HTTPRequests returns every HTTP request so far, oldest first.
func (s *Server) HTTPRequests() []HTTPRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.httpLog)
}

// PKIRequests returns every parsed pkiMessage so far, oldest first.
func (s *Server) PKIRequests() []PKIRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pkiLog)
}

// PKCSReqTransactions returns how many PKCSReqs arrived in each
// transaction, by transactionID, as test/micromdm's does: exactly once
// means one each. Strays are left out: a PKCSReq enveloped for another
// server's certificates is no transaction of this one (it came from a
// client of a server whose port this one took over), and a resend by the
// client under test is always enveloped for this server, so it is counted.
func (s *Server) PKCSReqTransactions() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, r := range s.pkiLog {
		if r.MessageType == "PKCSReq" && !r.Stray {
			out[r.TransactionID]++
		}
	}
	return out
}

// PKCSReqs returns how many PKCSReqs arrived in this server's transactions
// (PKCSReqTransactions summed, strays left out); PKIMessages counts every
// PKCSReq that arrived.
func (s *Server) PKCSReqs() int {
	n := 0
	for _, c := range s.PKCSReqTransactions() {
		n += c
	}
	return n
}

// LastPKIRequest returns the most recent parsed pkiMessage, and false if
// none arrived yet.
func (s *Server) LastPKIRequest() (PKIRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pkiLog) == 0 {
		return PKIRequest{}, false
	}
	return s.pkiLog[len(s.pkiLog)-1], true
}

// Issued returns the certificates issued so far, oldest first.
func (s *Server) Issued() []*x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.issued)
}

// Revoke lists serial on the CRL that GetCRL returns from now on.
func (s *Server) Revoke(serial *big.Int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked = append(s.revoked, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: time.Now()})
}

// PendingTransactions returns the transactionIDs of the enrolments now
// waiting for approval (PENDING), sorted.
func (s *Server) PendingTransactions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, t := range s.txns {
		if t.state == statusPending {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Approve issues the certificate of the pending transaction txID, as a CA
// manager approving the request would: the next CertPoll gets SUCCESS,
// whatever Pending or PendingForever say. It fails if no such transaction
// is pending.
func (s *Server) Approve(txID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.txns[txID]
	if t == nil || t.state != statusPending {
		return fmt.Errorf("scepserver: no pending transaction %q", txID)
	}
	crt, err := s.issueLocked(s.behavior, t.csr)
	if err != nil {
		return err
	}
	t.state, t.cert = statusSuccess, crt
	return nil
}

// Reject denies the pending transaction txID: the next CertPoll gets
// FAILURE with failInfo (BadAlg..BadCertID) and, if text is not empty,
// text as failInfoText. It fails if no such transaction is pending.
func (s *Server) Reject(txID string, failInfo int, text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.txns[txID]
	if t == nil || t.state != statusPending {
		return fmt.Errorf("scepserver: no pending transaction %q", txID)
	}
	t.state, t.failInfo, t.failText = statusFailure, failInfo, text
	return nil
}

// reply is an HTTP answer before the HTTP faults touch it.
type reply struct {
	status      int
	contentType string
	body        []byte
}

// ServeHTTP answers the SCEP operations of RFC 8894 section 4.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	op := q.Get("operation")

	s.mu.Lock()
	b := s.behavior
	s.requests[op]++
	s.httpLog = append(s.httpLog, HTTPRequest{
		Method:      r.Method,
		Operation:   op,
		Message:     q.Get("message"),
		QueryBytes:  len(r.URL.RawQuery),
		ContentType: r.Header.Get("Content-Type"),
	})
	s.mu.Unlock()

	switch {
	case r.Method == http.MethodGet && b.MaxQueryBytes > 0 && len(r.URL.RawQuery) > b.MaxQueryBytes:
		// IIS request filtering runs before NDES sees the request.
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, iisQueryTooLong)
		return
	case r.Method == http.MethodPost && b.GetOnly, r.Method != http.MethodGet && r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	case r.Method == http.MethodPost && b.PostEmptyOK:
		w.WriteHeader(http.StatusOK)
		return
	case op == OpGetCACaps && b.NoCaps && b.NoCapsAnswer == NoCapsClose:
		closeConnection(w)
		return
	}

	var msg *pkiMessage
	if op == OpPKIOperation {
		der, err := pkiMessageBody(r, b.GETURLSafeBase64)
		if err != nil {
			s.mu.Lock()
			s.messages["malformed"]++
			s.mu.Unlock()
			http.Error(w, "scepserver: "+err.Error(), http.StatusBadRequest)
			return
		}
		msg = s.record(r.Method, r.RemoteAddr, der)
	}

	fault := s.takeFault(b, op)
	if fault && b.Delay > 0 {
		select {
		case <-time.After(b.Delay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case fault && b.Status != 0:
		if b.RetryAfter != "" {
			w.Header().Set("Retry-After", b.RetryAfter)
		}
		http.Error(w, http.StatusText(b.Status), b.Status)
		return
	case fault && b.HTMLStatus200:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, htmlErrorPage)
		return
	}

	var rep reply
	switch op {
	case OpGetCACaps:
		rep = s.getCACaps(b)
	case OpGetCACert:
		rep = s.getCACert(b)
	case OpGetNextCACert:
		rep = s.getNextCACert(b)
	case OpPKIOperation:
		rep = s.pkiOperation(b, msg)
	default:
		rep = reply{status: http.StatusBadRequest, contentType: "text/plain", body: []byte("unknown operation " + op)}
	}

	binary := rep.status == http.StatusOK && (op == OpGetCACert || op == OpPKIOperation)
	if fault && b.Garbage && rep.status == http.StatusOK {
		rep.body = make([]byte, 64+len(rep.body)/2)
		rand.Read(rep.body)
		// Garbage is never DER: one body in 256 would otherwise start
		// with a SEQUENCE tag and fail later, in the PKCS#7 parser, with
		// a different error (TruncatedDER is that case).
		if rep.body[0] == 0x30 {
			rep.body[0] = 0
		}
	}
	if fault && b.TruncatedDER && binary {
		rep.body = rep.body[:len(rep.body)/2]
	}
	w.Header().Set("Content-Type", rep.contentType)
	w.WriteHeader(rep.status)
	w.Write(rep.body)
}

// takeFault says whether the HTTP faults apply to this request, counting it
// against FaultTimes.
func (s *Server) takeFault(b Behavior, op string) bool {
	if b.Delay == 0 && b.Status == 0 && !b.HTMLStatus200 && !b.Garbage && !b.TruncatedDER {
		return false
	}
	if b.FaultOperations != nil && !slices.Contains(b.FaultOperations, op) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.FaultTimes > 0 && s.faultsServed >= b.FaultTimes {
		return false
	}
	s.faultsServed++
	return true
}

// closeConnection drops the client's connection without an answer.
func closeConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // net/http closes the connection
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close() // nothing to tell the client: closing is the answer
}

func (s *Server) getCACaps(b Behavior) reply {
	if b.NoCaps {
		if b.NoCapsAnswer == NoCapsEmpty {
			return reply{status: http.StatusOK, contentType: "text/plain"}
		}
		return reply{status: http.StatusInternalServerError, contentType: "text/plain", body: []byte("operation GetCACaps not supported")}
	}
	caps := b.Caps
	if caps == nil {
		caps = defaultCaps
		if b.GetOnly {
			caps = slices.DeleteFunc(slices.Clone(caps), func(c string) bool {
				return c == "POSTPKIOperation" || c == "SCEPStandard"
			})
		}
	}
	s.mu.Lock()
	announced := s.next != nil
	s.mu.Unlock()
	if announced && !slices.Contains(caps, OpGetNextCACert) {
		caps = append(slices.Clone(caps), OpGetNextCACert)
	}
	return reply{status: http.StatusOK, contentType: "text/plain", body: []byte(strings.Join(caps, "\n"))}
}

func (s *Server) getCACert(b Behavior) reply {
	const single, bundle = "application/x-x509-ca-cert", "application/x-x509-ca-ra-cert"
	if !b.RASplit {
		ct := single
		if b.WrongContentType {
			ct = bundle
		}
		s.mu.Lock()
		ca := s.CA
		s.mu.Unlock()
		return reply{status: http.StatusOK, contentType: ct, body: ca.Raw}
	}
	s.mu.Lock()
	ca := s.CA
	ra, err := s.raLocked()
	s.mu.Unlock()
	if err != nil {
		return reply{status: http.StatusInternalServerError, contentType: "text/plain", body: []byte(err.Error())}
	}
	certs := []*x509.Certificate{ca, ra.sign, ra.encrypt}
	if b.CACertRAFirst {
		certs = []*x509.Certificate{ra.sign, ra.encrypt, ca}
	}
	der, err := degenerate(certs, nil)
	if err != nil {
		return reply{status: http.StatusInternalServerError, contentType: "text/plain", body: []byte(err.Error())}
	}
	ct := bundle
	if b.WrongContentType {
		ct = single
	}
	return reply{status: http.StatusOK, contentType: ct, body: der}
}

// pkiMessageBody returns the DER pkiMessage: the POST body, or the GET
// message parameter in standard base64 (RFC 8894 section 4.1); the
// URL-safe alphabet only with urlSafe.
func pkiMessageBody(r *http.Request, urlSafe bool) ([]byte, error) {
	if r.Method == http.MethodPost {
		return io.ReadAll(io.LimitReader(r.Body, 1<<20))
	}
	m := r.URL.Query().Get("message")
	der, err := base64.StdEncoding.DecodeString(m)
	if err != nil && urlSafe {
		// With or without padding, as clients differ.
		if d, e := base64.RawURLEncoding.DecodeString(strings.TrimRight(m, "=")); e == nil {
			der, err = d, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("message parameter is not standard base64: %w", err)
	}
	return der, nil
}

// raLocked returns the RA certificates, creating them on first use; s.mu
// must be held.
func (s *Server) raLocked() (*raCerts, error) {
	if s.ra != nil {
		return s.ra, nil
	}
	// Both carry the Certificate Request Agent EKU, as NDES's Enrollment
	// Agent (Offline request) and CEP Encryption templates do.
	requestAgent := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 1}
	sign, signKey, err := s.issueRA("scepserver RA signing", x509.KeyUsageDigitalSignature, requestAgent)
	if err != nil {
		return nil, err
	}
	enc, encKey, err := s.issueRA("scepserver RA encryption", x509.KeyUsageKeyEncipherment, requestAgent)
	if err != nil {
		return nil, err
	}
	s.ra = &raCerts{sign: sign, encrypt: enc, signKey: signKey, encryptKey: encKey}
	return s.ra, nil
}

func (s *Server) issueRA(cn string, usage x509.KeyUsage, eku asn1.ObjectIdentifier) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("scepserver: generate %s key: %w", cn, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:       serial,
		Subject:            pkix.Name{CommonName: cn, Organization: []string{"scep-operator tests"}},
		NotBefore:          now.Add(-time.Hour),
		NotAfter:           now.AddDate(2, 0, 0),
		KeyUsage:           usage,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{eku},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.CA, &key.PublicKey, s.CAKey)
	if err != nil {
		return nil, nil, fmt.Errorf("scepserver: issue %s certificate: %w", cn, err)
	}
	crt, err := x509.ParseCertificate(der)
	return crt, key, err
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// iisQueryTooLong is the gist of IIS's request-filtering page for a query
// string over maxQueryString.
const iisQueryTooLong = `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>IIS 10.0 Detailed Error - 404.15 - Not Found</title></head>
<body><div id="content"><div class="content-container"><h3>HTTP Error 404.15 - Not Found</h3>
<h4>The request filtering module is configured to deny a request where the query string is too long.</h4></div>
<div class="content-container"><fieldset><h4>Things you can try:</h4>
<ul><li>Verify the configuration/system.webServer/security/requestFiltering/requestLimits@maxQueryString setting in the applicationhost.config or web.config file.</li></ul>
</fieldset></div></div></body></html>
`

// htmlErrorPage is what a proxy, load balancer or login portal answers in
// place of the SCEP server, with status 200.
const htmlErrorPage = `<!DOCTYPE html>
<html><head><title>Service Unavailable</title></head>
<body><h1>Sorry, something went wrong</h1><p>The page you requested is temporarily unavailable. Please sign in again or contact your administrator.</p></body></html>
`
