// Package ndes is an in-process emulator of Microsoft's Network Device
// Enrollment Service (NDES, the SCEP server of AD CS on IIS) for client
// tests. It is strict where NDES is strict:
//
//   - /certsrv/mscep/mscep.dll (and its /pkiclient.exe alias) speaks SCEP
//     through a test/scepserver.Server in its NDES shape: GetCACert returns
//     an RA signing certificate (Enrollment Agent, digitalSignature), an RA
//     encryption certificate (CEP Encryption, keyEncipherment) and the CA,
//     in that order;
//     a request not enveloped to the RA encryption certificate gets HTTP 500
//     "cannot decrypt the client's PKCS7 message (0x80090005)"; GET queries
//     over IIS's 2048 bytes get "HTTP Error 404.15".
//   - PKCSReq needs a one-time challenge password from the admin page,
//     valid 60 minutes and usable once; a reused, expired or unknown one is
//     answered FAILURE/badRequest with Microsoft's error-code attribute
//     (ErrInvalidPassword) and no failInfoText, as NDES sends; the text
//     NDES logs is PasswordRefusedText.
//   - Options.Version picks the Windows Server release: Version2016 (the
//     default: 2016, 2019, 2022), Version2012R2 or Version2008. Together
//     they set the Server header, the capabilities, what POST does, the
//     reply's encryption and what a failed GetCACaps looks like; every
//     version signs replies as NDES does (signature algorithm
//     rsaEncryption, no certificates, no signingTime, a FAILURE's content
//     one 0x00 byte) and returns GetCACert as RA signing, RA encryption,
//     CA.
//   - /certsrv/mscep_admin/ hands out those passwords behind NTLMv2 (or
//     Basic) authentication, as an HTML page in UTF-16LE without BOM or
//     charset, with the CA thumbprint in <B> tags before the password; at
//     most 5 unused passwords exist ("The password cache is full.").
//   - ManualApproval answers PENDING until the test calls Approve or Reject;
//     CertPoll then gets the certificate or the failure.
//
// Paths are matched case-insensitively, as IIS does. The emulator imports
// nothing from this module's internal packages: it is a peer of our client,
// written from the protocol and NDES's observed behaviour, not from the
// client's code.
package ndes

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scep-operator/scep-operator/test/scepserver"
)

// Texts NDES shows or logs, as the emulator sends them.
const (
	// PasswordRefusedText is what NDES logs (event 29) for a PKCSReq whose
	// challenge password is unknown, expired or already used; the reply
	// carries ErrInvalidPassword, not this text.
	PasswordRefusedText = "The password in the certificate request cannot be verified. It may have been used already. Obtain a new password to submit with this request."
	// CacheFullText is the admin page's message when CacheSize unused,
	// unexpired passwords exist.
	CacheFullText = "The password cache is full."
	// NoPermissionText is the admin page's message (HTTP 200) for an
	// authenticated user not in Options.AllowedUsers.
	NoPermissionText = "You do not have sufficient permission to enroll with SCEP. Please contact your system administrator."
	// RejectedText is what the CA says of a request Reject denied; the
	// reply carries ErrAdminDenied.
	RejectedText = "The request was denied by a certificate manager or CA administrator."
)

// HRESULTs in NDES's error-code attribute (1.3.6.1.4.1.311.21.33), a
// signed decimal in a PrintableString, as the emulator sends them.
const (
	// ErrInvalidArg is E_INVALIDARG (0x80070057), what a real NDES 2012
	// answered to a GetCRL (sscep issue 59); the emulator sends it for
	// every failure without a code of its own.
	ErrInvalidArg int32 = -2147024809
	// ErrInvalidPassword is HRESULT_FROM_WIN32(ERROR_INVALID_PASSWORD)
	// (0x80070056), the emulator's code for a refused challenge password.
	// No public capture of a real reply to a bad password was found; it is
	// our choice, documented in docs/ndes.md.
	ErrInvalidPassword int32 = -2147024810
	// ErrTemplateDenied is CERTSRV_E_TEMPLATE_DENIED (0x80094012): the CA
	// does not let NDES's account enroll with the template.
	ErrTemplateDenied int32 = -2146877422
	// ErrAdminDenied is CERTSRV_E_ADMIN_DENIED_REQUEST (0x80094014): a CA
	// manager denied the pending request.
	ErrAdminDenied int32 = -2146877420
	// ErrCAUnavailable is HRESULT_FROM_WIN32(RPC_S_SERVER_UNAVAILABLE)
	// (0x800706BA): NDES cannot reach the CA.
	ErrCAUnavailable int32 = -2147023174
)

// Version is the Windows Server release whose NDES the emulator plays.
type Version int

const (
	// Version2016 is NDES on IIS 10 (Windows Server 2016, 2019, 2022):
	// "Server: Microsoft-IIS/10.0", capabilities POSTPKIOperation, Renewal,
	// SHA-512, SHA-256, SHA-1, DES3 (no AES, though AES requests are
	// accepted), POST works, replies in the request's cipher with PKCS#1
	// v1.5 key transport. The default.
	Version2016 Version = iota
	// Version2012R2 is NDES on IIS 8.5: the same capabilities, but a POST
	// is answered with an empty HTTP 200 (reported behaviour), so clients
	// must use GET; replies to AES requests use RSAES-OAEP key transport.
	Version2012R2
	// Version2008 is NDES on IIS 7.0 without the GetCACaps hotfix:
	// GetCACaps closes the connection (see Options.CapsFailure), only GET
	// works, and replies are encrypted with single DES whatever the
	// request used.
	Version2008
)

// String names the release.
func (v Version) String() string {
	switch v {
	case Version2016:
		return "2016+"
	case Version2012R2:
		return "2012 R2"
	case Version2008:
		return "2008"
	}
	return fmt.Sprintf("Version(%d)", int(v))
}

// CapsFailure is how GetCACaps fails under Options.NoCaps (and on
// Version2008).
type CapsFailure int

const (
	// CapsClose closes the connection without an answer (the default).
	CapsClose CapsFailure = iota
	// CapsEmpty answers HTTP 200 with an empty body.
	CapsEmpty
	// CapsHTTP500 answers HTTP 500.
	CapsHTTP500
)

// Defaults for the Options left empty.
const (
	// DefaultDomain is the NetBIOS domain name of the admin page's accounts.
	DefaultDomain = "CORP"
	// DefaultUsername is the admin page account's user name.
	DefaultUsername = "svc-scep"
	// DefaultPassword is the admin page account's password.
	DefaultPassword = "Ndes-Test-Pa55!"
	// DefaultPasswordValidity is how long a one-time password stays valid.
	DefaultPasswordValidity = 60 * time.Minute
	// DefaultCacheSize is how many unused passwords NDES keeps (the
	// PasswordMax registry value).
	DefaultCacheSize = 5
	// DefaultMaxQueryBytes is IIS's maxQueryString.
	DefaultMaxQueryBytes = 2048
)

// defaultCaps is what NDES on Windows Server 2012 R2 and later answers to
// GetCACaps: no AES, though it decrypts AES requests.
var defaultCaps = []string{"POSTPKIOperation", "Renewal", "SHA-512", "SHA-256", "SHA-1", "DES3"}

// oidDESCBC is single DES, what NDES 2008 encrypts replies with.
var oidDESCBC = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}

// AuthMode is how the admin page authenticates its users.
type AuthMode int

const (
	// AuthNTLM is IIS Windows Authentication with the NTLM provider: a
	// two-request NTLMv2 handshake on one TCP connection (the default).
	AuthNTLM AuthMode = iota
	// AuthBasic is IIS Basic Authentication against the same accounts.
	AuthBasic
	// AuthBoth offers NTLM and Basic; either works.
	AuthBoth
	// AuthNone serves the admin page to anyone (anonymous authentication).
	AuthNone
)

// Encoding is the character encoding of the admin page's bytes.
type Encoding int

const (
	// UTF16LE is little-endian UTF-16 without byte order mark, what NDES
	// serves (the default), with Content-Type "text/html" and no charset.
	UTF16LE Encoding = iota
	// UTF16LEBOM is UTF16LE preceded by the byte order mark FF FE.
	UTF16LEBOM
	// UTF16BE is big-endian UTF-16 without byte order mark.
	UTF16BE
	// UTF16BEBOM is UTF16BE preceded by the byte order mark FE FF.
	UTF16BEBOM
	// UTF8 is UTF-8 without byte order mark.
	UTF8
)

// Options configure the emulator. The zero value is a default NDES on
// Windows Server 2016 or later: one-time passwords enforced, 60 minutes, 5
// cached, NTLM with the account DefaultDomain\DefaultUsername, POST
// allowed, immediate issuance.
type Options struct {
	// Version is the Windows Server release (Version2016 by default).
	Version Version
	// Caps is the GetCACaps answer; nil means NDES's set POSTPKIOperation,
	// Renewal, SHA-512, SHA-256, SHA-1, DES3 (minus POSTPKIOperation under
	// GetOnly).
	Caps []string
	// NoCaps makes GetCACaps fail as NDES before the hotfix does (always on
	// Version2008); CapsFailure says how.
	NoCaps bool
	// CapsFailure is how GetCACaps fails: the connection closed (the
	// default), an empty 200 or HTTP 500.
	CapsFailure CapsFailure
	// GetOnly refuses POST PKIOperation (405) and, with nil Caps, leaves
	// POSTPKIOperation out of the caps, as old NDES does (always on
	// Version2008).
	GetOnly bool
	// FailWith, if not zero, answers every pkiMessage with
	// FAILURE/badRequest and this HRESULT (e.g. ErrTemplateDenied,
	// ErrCAUnavailable), before any password is checked or used.
	FailWith int32
	// ResendIsPoll answers a PKCSReq resent with a known transactionID as
	// a poll of that transaction (PENDING, the certificate, or the
	// failure) without checking its password again. By default, the
	// password is checked first, so a resend whose one-time password was
	// used is refused (see docs/ndes.md for why).
	ResendIsPoll bool
	// URLSafeBase64 also decodes a GET message in the URL-safe base64
	// alphabet. By default, as NDES decodes with CryptStringToBinary's
	// standard alphabet, it is refused (HTTP 400).
	URLSafeBase64 bool
	// MaxQueryBytes is IIS's maxQueryString: a longer GET query string gets
	// "HTTP Error 404.15 - Query string too long". Zero means 2048;
	// negative means no limit.
	MaxQueryBytes int
	// ManualApproval answers PKCSReq with PENDING (a template that needs a
	// CA manager's approval) until Approve or Reject.
	ManualApproval bool

	// NoEnforcePassword turns the challenge check off (NDES's
	// EnforcePassword registry value 0): PKCSReq needs no password. The
	// admin page still hands passwords out.
	NoEnforcePassword bool
	// SinglePassword, if set, is NDES's UseSinglePassword mode: the admin
	// page always shows this password, and PKCSReq must carry it; it never
	// expires and can be used any number of times.
	SinglePassword string
	// PasswordValidity is how long a one-time password is accepted after
	// it was issued; zero means 60 minutes.
	PasswordValidity time.Duration
	// CacheSize is how many unused, unexpired passwords may exist before
	// the admin page says "The password cache is full."; zero means 5,
	// negative means no limit.
	CacheSize int
	// Now is the clock for password issuance and expiry; nil is time.Now.
	Now func() time.Time

	// Auth is how the admin page authenticates (NTLM by default).
	Auth AuthMode
	// OfferNegotiate also offers "WWW-Authenticate: Negotiate" before NTLM,
	// as IIS's default provider list does, and accepts raw NTLM messages
	// under the Negotiate scheme. SPNEGO/Kerberos tokens are refused.
	OfferNegotiate bool
	// AuthPersistSingleRequest makes every admin request authenticate
	// anew. By default, as IIS does, a connection that completed an NTLM
	// handshake stays authenticated for the requests that follow on it.
	AuthPersistSingleRequest bool
	// Domain is the NetBIOS domain name; empty means DefaultDomain.
	Domain string
	// DNSDomain is the DNS domain name, accepted in user@domain and as a
	// domain; empty means lower-case Domain + ".example.test".
	DNSDomain string
	// Username and Password are the admin page account; empty means
	// DefaultUsername and DefaultPassword.
	Username, Password string
	// Users are further accounts of the domain, user name to password.
	Users map[string]string
	// AllowedUsers, if not empty, are the accounts allowed to get
	// passwords ("user", `DOMAIN\user` or "user@domain", case-insensitive);
	// other accounts authenticate but get NoPermissionText (HTTP 200).
	AllowedUsers []string
	// Realm is the Basic realm; empty means the request's Host.
	Realm string
	// Kerberos, if set, also accepts Negotiate with Kerberos tickets for
	// the page's SPN (see negotiate.go).
	Kerberos *Kerberos
	// Templates are the registry's template names (see template.go).
	Templates RegistryTemplates

	// PageEncoding is the admin page's encoding; UTF-16LE without BOM by
	// default.
	PageEncoding Encoding
	// ContentType is the admin page's Content-Type; empty means "text/html".
	ContentType string
	// ThumbprintHash is the hash of the CA certificate the admin page
	// prints; zero means MD5, which is what NDES prints (it matches none of
	// the SHA-1 thumbprints Windows shows for the CA). crypto.SHA1 and
	// crypto.SHA256 are also accepted.
	ThumbprintHash crypto.Hash

	// TLS serves HTTPS with httptest's certificate (see Server.HTTP).
	TLS bool
}

// withDefaults fills in the empty options.
func (o Options) withDefaults() Options {
	if o.MaxQueryBytes == 0 {
		o.MaxQueryBytes = DefaultMaxQueryBytes
	}
	if o.PasswordValidity == 0 {
		o.PasswordValidity = DefaultPasswordValidity
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if o.DNSDomain == "" {
		o.DNSDomain = strings.ToLower(o.Domain) + ".example.test"
	}
	if o.Username == "" {
		o.Username = DefaultUsername
	}
	if o.Password == "" {
		o.Password = DefaultPassword
	}
	if o.ThumbprintHash == 0 {
		o.ThumbprintHash = crypto.MD5
	}
	return o
}

// Counters is a snapshot of what the emulator has seen.
type Counters struct {
	// AdminRequests counts every HTTP request to the admin page, handshake
	// legs and refusals included.
	AdminRequests int
	// AuthChallenges counts 401 answers carrying an NTLM CHALLENGE message.
	AuthChallenges int
	// AuthFailures counts 401 answers for missing or refused credentials.
	AuthFailures int
	// PasswordPages counts admin pages that showed a password.
	PasswordPages int
	// CacheFullPages counts "The password cache is full." pages.
	CacheFullPages int
	// PermissionPages counts "You do not have sufficient permission" pages.
	PermissionPages int
	// PasswordsIssued counts one-time passwords created (admin page or
	// IssuePassword).
	PasswordsIssued int
	// PasswordsConsumed counts passwords a PKCSReq used successfully.
	PasswordsConsumed int
	// PasswordsRefused counts PKCSReqs refused for their password.
	PasswordsRefused int
	// PKCSReq counts PKCSReq pkiMessages (from the SCEP server).
	PKCSReq int
	// CertPoll counts CertPoll pkiMessages (from the SCEP server).
	CertPoll int
	// LastAuthUser is the last account that authenticated on the admin
	// page, as `DOMAIN\user`.
	LastAuthUser string
	// LastAuthScheme is how it authenticated: "NTLM" or "Basic" (or
	// "NTLM (connection)" when an authenticated connection was reused).
	LastAuthScheme string
	// LastAuthFailure says why the last refused authentication was refused.
	LastAuthFailure string
}

// Server is a running NDES emulator.
type Server struct {
	// URL is the SCEP endpoint, http://127.0.0.1:PORT/certsrv/mscep/mscep.dll.
	URL string
	// AdminURL is the admin page, http://127.0.0.1:PORT/certsrv/mscep_admin/.
	AdminURL string
	// CA is the issuing CA certificate.
	CA *x509.Certificate
	// RASign is the RA signing (Enrollment Agent) certificate that signs
	// CertReps.
	RASign *x509.Certificate
	// RAEncrypt is the RA encryption (CEP Encryption) certificate requests
	// must be enveloped to.
	RAEncrypt *x509.Certificate
	// Thumbprint is the CA thumbprint exactly as the admin page prints it
	// (Options.ThumbprintHash of the CA certificate, lower-case hex in
	// groups of 8).
	Thumbprint string
	// SCEP is the SCEP server behind the endpoint, for its request logs and
	// fault knobs. Its Set may change anything, including what this
	// emulator configured (keep RASplit and VerifyChallenge); this
	// Server's Set reapplies the NDES behaviour.
	SCEP *scepserver.Server
	// HTTP is the listener, for Client (with TLS) or
	// CloseClientConnections.
	HTTP *httptest.Server

	mu          sync.Mutex
	opts        Options
	passwords   map[string]time.Time // unused one-time passwords and when they were issued
	everIssued  []string             // every one-time password issued, for secret-hygiene checks
	enrollments []Enrollment         // the PKCSReqs accepted, with the registry's template choice
	counters    Counters
}

// Start starts an NDES emulator on a loopback listener and closes it when
// the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	scep := scepserver.Start(t, scepserver.Behavior{RASplit: true, DecryptFailureStatus: http.StatusInternalServerError})
	sign, enc, err := scep.RACerts()
	if err != nil {
		t.Fatalf("ndes: RA certificates: %v", err)
	}
	s := &Server{
		CA:        scep.CA,
		RASign:    sign,
		RAEncrypt: enc,
		SCEP:      scep,
		opts:      opts.withDefaults(),
		passwords: map[string]time.Time{},
	}
	s.Thumbprint, err = thumbprint(s.CA, s.opts.ThumbprintHash)
	if err != nil {
		t.Fatalf("ndes: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	srv.Config.ConnContext = connContext
	if opts.TLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	s.HTTP = srv
	// Restart may replace HTTP: close whichever listener serves at the end.
	t.Cleanup(func() { s.listener().Close() })
	s.URL = srv.URL + "/certsrv/mscep/mscep.dll"
	s.AdminURL = srv.URL + "/certsrv/mscep_admin/"
	scep.URL = s.URL
	s.applySCEP(s.opts)
	return s
}

// Set changes the options for the requests that follow. Passwords already
// issued stay valid (for the new PasswordValidity); the thumbprint and TLS
// do not change.
func (s *Server) Set(change func(o *Options)) {
	s.mu.Lock()
	o := s.opts
	change(&o)
	o = o.withDefaults()
	s.opts = o
	s.mu.Unlock()
	// Outside s.mu: the challenge hook takes s.mu under the SCEP server's
	// lock, so s.mu is never held while calling into it.
	s.applySCEP(o)
}

// applySCEP configures the SCEP server as NDES with options o.
func (s *Server) applySCEP(o Options) {
	s.SCEP.Set(func(b *scepserver.Behavior) {
		b.RASplit = true
		b.DecryptFailureStatus = http.StatusInternalServerError
		getOnly := o.GetOnly || o.Version == Version2008
		b.NoCaps = o.NoCaps || o.Version == Version2008
		b.NoCapsAnswer = map[CapsFailure]scepserver.NoCapsAnswer{
			CapsClose: scepserver.NoCapsClose, CapsEmpty: scepserver.NoCapsEmpty, CapsHTTP500: scepserver.NoCapsHTTP500,
		}[o.CapsFailure]
		b.GetOnly = getOnly
		b.PostEmptyOK = o.Version == Version2012R2 && !getOnly
		b.GETURLSafeBase64 = o.URLSafeBase64
		b.MaxQueryBytes = max(o.MaxQueryBytes, 0)
		b.Caps = o.Caps
		if b.Caps == nil {
			b.Caps = slices.Clone(defaultCaps)
			if getOnly {
				b.Caps = slices.DeleteFunc(b.Caps, func(c string) bool { return c == "POSTPKIOperation" })
			}
		}
		b.PendingForever = o.ManualApproval
		b.ResendIsPoll = o.ResendIsPoll
		b.Challenge = ""
		b.VerifyChallenge = nil
		if !o.NoEnforcePassword {
			b.VerifyChallenge = s.verifyChallenge
		}
		b.FailInfo, b.FailInfoText = nil, ""
		if o.FailWith != 0 {
			b.FailInfo, b.FailInfoText = new(int), hresultReason(o.FailWith)
			*b.FailInfo = scepserver.BadRequest
		}
		// Replies as NDES writes them, on every version.
		b.CACertRAFirst = true
		b.ReplyRSAEncryption, b.ReplyNoCertificates, b.ReplyNoSigningTime = true, true, true
		b.ZeroByteContent = true
		b.FailureAttrs = failureAttrs
		b.ReplyOAEPForAES = o.Version == Version2012R2
		b.ReplyCipher = nil
		if o.Version == Version2008 {
			b.ReplyCipher = oidDESCBC
		}
	})
}

// reasons are the texts behind the emulator's HRESULTs, as NDES and the CA
// log them; the SCEP server passes them to failureAttrs as the reason.
var reasons = map[string]int32{
	PasswordRefusedText: ErrInvalidPassword,
	RejectedText:        ErrAdminDenied,
	"The permissions on the certificate template do not allow the current user to enroll for this type of certificate.": ErrTemplateDenied,
	"The RPC server is unavailable.": ErrCAUnavailable,
}

// hresultReason is the reason text the emulator uses for code.
func hresultReason(code int32) string {
	for text, c := range reasons {
		if c == code {
			return text
		}
	}
	return "HRESULT " + strconv.Itoa(int(code))
}

// failureAttrs writes a FAILURE as NDES does: no failInfoText, and the
// HRESULT of the reason (E_INVALIDARG when there is none of its own).
func failureAttrs(_ int, reason string) (string, string) {
	code, ok := reasons[reason]
	if !ok {
		code = ErrInvalidArg
		if n, found := strings.CutPrefix(reason, "HRESULT "); found {
			if v, err := strconv.ParseInt(n, 10, 32); err == nil {
				code = int32(v)
			}
		}
	}
	return "", strconv.Itoa(int(code))
}

// Counters returns what the emulator has counted so far.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	c := s.counters
	s.mu.Unlock()
	c.PKCSReq = s.SCEP.PKIMessages("PKCSReq")
	c.CertPoll = s.SCEP.PKIMessages("CertPoll")
	return c
}

// PendingTransactions returns the transactionIDs waiting for Approve or
// Reject, sorted.
func (s *Server) PendingTransactions() []string { return s.SCEP.PendingTransactions() }

// Approve issues the certificate of a pending transaction: the next
// CertPoll gets SUCCESS.
func (s *Server) Approve(txID string) error { return s.SCEP.Approve(txID) }

// Reject denies a pending transaction: the next CertPoll gets FAILURE
// badRequest with RejectedText.
func (s *Server) Reject(txID string) error {
	return s.SCEP.Reject(txID, scepserver.BadRequest, RejectedText)
}

// ApproveAll approves every pending transaction and returns their IDs.
func (s *Server) ApproveAll() []string {
	var done []string
	for _, id := range s.PendingTransactions() {
		if s.Approve(id) == nil {
			done = append(done, id)
		}
	}
	return done
}

// serveHTTP routes as IIS does for NDES's two applications.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	v := s.opts.Version
	s.mu.Unlock()
	w.Header().Set("Server", iisServer[v])
	switch strings.ToLower(r.URL.Path) {
	case "/certsrv/mscep/mscep.dll", "/certsrv/mscep/mscep.dll/pkiclient.exe":
		s.SCEP.ServeHTTP(w, r)
	case "/certsrv/mscep_admin/", "/certsrv/mscep_admin/mscep.dll":
		s.serveAdmin(w, r)
	case "/certsrv/mscep_admin", "/certsrv/mscep":
		// IIS redirects a directory without its slash.
		http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
	default:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, iisNotFound)
	}
}

// iisServer is the Server header of each release's IIS.
var iisServer = map[Version]string{
	Version2016:   "Microsoft-IIS/10.0",
	Version2012R2: "Microsoft-IIS/8.5",
	Version2008:   "Microsoft-IIS/7.0",
}

// thumbprint formats h(CA) as NDES prints it.
func thumbprint(ca *x509.Certificate, h crypto.Hash) (string, error) {
	if h != crypto.MD5 && h != crypto.SHA1 && h != crypto.SHA256 {
		return "", fmt.Errorf("ThumbprintHash %v is not MD5, SHA-1 or SHA-256", h)
	}
	d := h.New()
	d.Write(ca.Raw)
	hexSum := fmt.Sprintf("%x", d.Sum(nil))
	var groups []string
	for len(hexSum) > 0 {
		n := min(8, len(hexSum))
		groups = append(groups, hexSum[:n])
		hexSum = hexSum[n:]
	}
	return strings.Join(groups, " "), nil
}

const iisNotFound = `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>404 - File or directory not found.</title></head>
<body><div id="header"><h1>Server Error</h1></div><div id="content"><div class="content-container"><fieldset>
<h2>404 - File or directory not found.</h2>
<h3>The resource you are looking for might have been removed, had its name changed, or is temporarily unavailable.</h3>
</fieldset></div></div></body></html>
`
