// Package micromdm runs MicroMDM's SCEP server (github.com/micromdm/scep/v2
// v2.3.0) in-process, wired the way its cmd/scepserver binary wires it, so
// client tests meet a real, independently written SCEP implementation
// without a separate process or network access.
//
// It deliberately imports nothing from this module's internal packages: it is
// a peer of our client, not a mirror of it.
package micromdm

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	scepdepot "github.com/micromdm/scep/v2/depot"
	"github.com/micromdm/scep/v2/depot/file"
	scepserver "github.com/micromdm/scep/v2/server"
	"github.com/smallstep/pkcs7"

	testscep "github.com/scep-operator/scep-operator/test/scepserver"
)

// Options mirror the scepserver command-line flags that matter to a client.
// The zero value is a server without a challenge that issues one-year
// certificates and lets the same subject enrol again at any time.
type Options struct {
	// Challenge is the static challenge password (-challenge); empty means
	// the server accepts any or no challengePassword.
	Challenge string

	// AllowRenewDays is -allowrenew: a subject that already holds a valid
	// certificate may only enrol again within this many days of its expiry,
	// otherwise the server answers FAILURE/badRequest ("DN ... already
	// exists"). Zero (the default) means "-allowrenew 0": always allowed,
	// which is what repeated test enrolments of one subject need. The
	// binary's own default is 14.
	AllowRenewDays int

	// ValidityDays is -crtvalid, the lifetime of issued certificates; zero
	// means MicroMDM's default of 365.
	ValidityDays int

	// CAKeyBits is the RSA key size of the CA; zero means 2048 ("scepserver
	// ca -init" defaults to 4096, which only slows tests down).
	CAKeyBits int

	// SignServerAttrs is -sign-server-attrs: issued certificates also get
	// keyEncipherment, dataEncipherment and serverAuth.
	SignServerAttrs bool

	// ListenAddress is the host:port the server listens on; empty means a
	// free loopback port. A pod reaches the server on the address of the
	// host's end of the pod network (test/cluster's Gateway).
	ListenAddress string
}

// Server is a running MicroMDM SCEP server with request counters, so tests
// can assert how many round trips a client made.
type Server struct {
	// URL is the SCEP endpoint, http://127.0.0.1:PORT/scep.
	URL string
	// CA is the CA certificate GetCACert returns (MicroMDM has no RA).
	CA *x509.Certificate
	// Depot is the file depot directory (ca.pem, index.txt, issued
	// certificates), for tests that want to look at what was issued.
	Depot string

	handler http.Handler
	srv     *httptest.Server

	mu       sync.Mutex
	requests map[string]int
	messages map[string]int
	// pkcsReqs counts PKCSReqs per transactionID.
	pkcsReqs map[string]int
}

// Start creates a CA in a fresh file depot under t.TempDir(), starts the
// server on a loopback httptest listener, and closes it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(t.TempDir(), opts, testLogger{t: t})
	if err != nil {
		t.Fatalf("micromdm: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Logger receives MicroMDM's log lines (go-kit's log.Logger shape, without
// importing go-kit).
type Logger interface {
	Log(keyvals ...any) error
}

// New creates a CA in a file depot in dir (which must exist and be empty)
// and starts the server on a loopback listener; Close stops it. logger may
// be nil to discard MicroMDM's logs.
func New(dir string, opts Options, logger Logger) (*Server, error) {
	if logger == nil {
		logger = discard{}
	}
	if err := initCA(dir, opts.CAKeyBits); err != nil {
		return nil, fmt.Errorf("create CA in %s: %w", dir, err)
	}
	depot, err := file.NewFileDepot(dir)
	if err != nil {
		return nil, fmt.Errorf("open file depot %s: %w", dir, err)
	}
	crts, key, err := depot.CA(nil)
	if err != nil {
		return nil, fmt.Errorf("load CA from depot %s: %w", dir, err)
	}

	validity := opts.ValidityDays
	if validity == 0 {
		validity = 365
	}
	signerOpts := []scepdepot.Option{
		scepdepot.WithAllowRenewalDays(opts.AllowRenewDays),
		scepdepot.WithValidityDays(validity),
	}
	if opts.SignServerAttrs {
		signerOpts = append(signerOpts, scepdepot.WithSeverAttrs())
	}
	var signer scepserver.CSRSignerContext = scepserver.SignCSRAdapter(scepdepot.NewSigner(depot, signerOpts...))
	if opts.Challenge != "" {
		// The same middleware cmd/scepserver installs for -challenge; the
		// challenge package's Middleware is the dynamic-store variant.
		signer = scepserver.StaticChallengeMiddleware(opts.Challenge, signer)
	}
	svc, err := scepserver.NewService(crts[0], key, signer, scepserver.WithLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("create SCEP service: %w", err)
	}

	s := &Server{
		CA:       crts[0],
		Depot:    dir,
		handler:  scepserver.MakeHTTPHandler(scepserver.MakeServerEndpoints(svc), svc, logger),
		requests: map[string]int{},
		messages: map[string]int{},
		pkcsReqs: map[string]int{},
	}
	if opts.ListenAddress == "" {
		s.srv = httptest.NewServer(s)
	} else {
		l, err := net.Listen("tcp", opts.ListenAddress)
		if err != nil {
			return nil, fmt.Errorf("listening on %s: %w", opts.ListenAddress, err)
		}
		s.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}}
		s.srv.Start()
	}
	s.URL = s.srv.URL + "/scep"
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.listener().Close() }

// Kill stops the server as a killed process stops: the listener closes and
// every connection, even one whose request is being served, is cut without
// an answer. The file depot (CA, serial, issued certificates) stays, as it
// does on disk; Restart serves from it again.
func (s *Server) Kill() { testscep.Kill(s.listener()) }

// Restart serves again on the address the server had, after Kill, from
// the same depot.
func (s *Server) Restart() error {
	srv, err := testscep.ServeAgain(s.listener(), &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("micromdm: %w", err)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

// listener is the httptest server now serving.
// Issued returns every certificate the depot holds but the CA's, read
// from its files: what the server itself says it issued, for tests and
// benches that account for every certificate.
func (s *Server) Issued() []*x509.Certificate {
	var out []*x509.Certificate
	_ = filepath.WalkDir(s.Depot, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".pem") || filepath.Base(p) == "ca.pem" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
			if block.Type != "CERTIFICATE" {
				continue
			}
			if c, err := x509.ParseCertificate(block.Bytes); err == nil && !c.IsCA {
				out = append(out, c)
			}
		}
		return nil
	})
	return out
}

func (s *Server) listener() *httptest.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

type discard struct{}

func (discard) Log(...any) error { return nil }

// Requests returns how many HTTP requests arrived with the given operation
// query parameter (GetCACaps, GetCACert, PKIOperation).
func (s *Server) Requests(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[op]
}

// PKIMessages returns how many PKIOperation messages of the given SCEP
// messageType name arrived: "PKCSReq", "RenewalReq", "UpdateReq", "CertPoll",
// "GetCert", "GetCRL"; "malformed" counts bodies that were not a signed
// pkiMessage with a messageType. MicroMDM itself only handles the first three.
func (s *Server) PKIMessages(msgType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages[msgType]
}

// ServeHTTP counts the request and hands it to MicroMDM's handler unchanged.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := r.URL.Query().Get("operation")
	var msgType, transaction string
	if op == "PKIOperation" {
		body := pkiMessageBody(r)
		msgType = messageTypeOf(body)
		if msgType == "PKCSReq" {
			transaction = transactionIDOf(body)
		}
	}
	s.mu.Lock()
	s.requests[op]++
	if msgType != "" {
		s.messages[msgType]++
	}
	if msgType == "PKCSReq" {
		s.pkcsReqs[transaction]++
	}
	s.mu.Unlock()
	s.handler.ServeHTTP(w, r)
}

// PKCSReqTransactions returns how many PKCSReqs arrived in each
// transaction, by transactionID ("" for a PKCSReq without one): exactly
// once means one each.
func (s *Server) PKCSReqTransactions() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.pkcsReqs))
	for tx, n := range s.pkcsReqs {
		out[tx] = n
	}
	return out
}

// pkiMessageBody extracts the DER pkiMessage the way MicroMDM's transport
// does, restoring a POST body so the real handler still reads it.
func pkiMessageBody(r *http.Request) []byte {
	switch r.Method {
	case http.MethodPost:
		body, _ := io.ReadAll(io.LimitReader(r.Body, 2<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		return body
	case http.MethodGet:
		msg, err := url.PathUnescape(r.URL.Query().Get("message"))
		if err != nil {
			return nil
		}
		der, err := base64.StdEncoding.DecodeString(msg)
		if err != nil {
			return nil
		}
		return der
	}
	return nil
}

var (
	oidSCEPMessageType   = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidSCEPTransactionID = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
)

// MessageTypeOf names the messageType of a DER pkiMessage (PKCSReq,
// RenewalReq, CertPoll, ...; "malformed" when it has none), for tests that
// count what reaches another server.
func MessageTypeOf(der []byte) string { return messageTypeOf(der) }

// messageTypeOf reads the messageType attribute with pkcs7 directly:
// smallstep/scep.ParsePKIMessage refuses CertPoll, GetCert and GetCRL, and its
// MessageType.String panics on values it does not know.
func messageTypeOf(der []byte) (name string) {
	defer func() {
		if recover() != nil {
			name = "malformed"
		}
	}()
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return "malformed"
	}
	var v string
	if err := p7.UnmarshalSignedAttribute(oidSCEPMessageType, &v); err != nil {
		return "malformed"
	}
	return messageTypeName(v)
}

// transactionIDOf reads the transactionID attribute of a DER pkiMessage
// ("" when it has none).
func transactionIDOf(der []byte) (id string) {
	defer func() {
		if recover() != nil {
			id = ""
		}
	}()
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return ""
	}
	_ = p7.UnmarshalSignedAttribute(oidSCEPTransactionID, &id)
	return id
}

// messageTypeName maps RFC 8894 messageType values to the names smallstep and
// MicroMDM use.
func messageTypeName(v string) string {
	switch v {
	case "3":
		return "CertRep"
	case "17":
		return "RenewalReq"
	case "18":
		return "UpdateReq"
	case "19":
		return "PKCSReq"
	case "20":
		return "CertPoll"
	case "21":
		return "GetCert"
	case "22":
		return "GetCRL"
	}
	return "unknown(" + v + ")"
}

// initCA does what "scepserver ca -init" does: an RSA key and a self-signed
// CA certificate in ca.key and ca.pem (unencrypted here: no -key-password).
func initCA(dir string, bits int) error {
	if bits == 0 {
		bits = 2048
	}
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return err
	}
	der, err := scepdepot.NewCACert(
		scepdepot.WithYears(10),
		scepdepot.WithCommonName("MICROMDM SCEP CA"),
		scepdepot.WithCountry("US"),
	).SelfSign(rand.Reader, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), keyPEM, 0o400); err != nil {
		return err
	}
	crtPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return os.WriteFile(filepath.Join(dir, "ca.pem"), crtPEM, 0o444)
}

// testLogger satisfies go-kit's log.Logger without importing go-kit, and
// sends MicroMDM's own log lines (why it refused a request) to the test log,
// shown on failure or with -v.
type testLogger struct{ t testing.TB }

func (l testLogger) Log(keyvals ...any) error {
	l.t.Log(append([]any{"micromdm:"}, keyvals...)...)
	return nil
}
