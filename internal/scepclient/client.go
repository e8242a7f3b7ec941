// Package scepclient speaks SCEP (RFC 8894) over HTTP: GetCACaps, GetCACert
// and PKIOperation, with GET or POST as the server allows, bounded reads,
// TLS trust and readable errors. Message building and parsing live in
// package scep; this package knows no ASN.1.
//
// The server may be hostile (a namespaced profile may name any URL), so
// the client connects only where the operator's egress policy allows,
// follows redirects only on the same scheme and host, caps each answer by
// operation, and its errors say what kind of answer came (status, content
// type, size, "an HTML page") without repeating what it said.
package scepclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/servertext"
)

// Operation names as they appear in SCEP's operation= query parameter.
const (
	OpGetCACaps    = "GetCACaps"
	OpGetCACert    = "GetCACert"
	OpPKIOperation = "PKIOperation"
)

// Defaults for Config's zero values.
const (
	DefaultTimeout = 30 * time.Second
	// MaxGETQueryBytes is the longest GET PKIOperation query sent by
	// default: 65534, the maxQueryString Microsoft's NDES guidance sets in
	// IIS. IIS's own default is 2048, which no RSA-2048 PKCSReq fits, so a
	// GET-only NDES (Windows Server 2008; 2012 R2, whose POST answers
	// nothing) works only with the limit raised; one left at 2048 answers
	// HTTP 404.15 before NDES sees the request, which the error explains.
	MaxGETQueryBytes = 65534
)

// The most each operation's answer may hold, in bytes. A capabilities list
// is a few lines; a GetCACert bundle a few certificates; a CertRep one
// certificate and its chain.
const (
	MaxCACapsBytes       = 64 << 10
	MaxCACertBytes       = 1 << 20
	MaxPKIOperationBytes = 1 << 20
)

// maxBytes returns op's cap.
func maxBytes(op string) int64 {
	switch op {
	case OpGetCACaps:
		return MaxCACapsBytes
	case OpGetCACert:
		return MaxCACertBytes
	}
	return MaxPKIOperationBytes
}

// Config describes one SCEP server and how to reach it.
type Config struct {
	// URL is the SCEP endpoint, e.g. http://ndes/certsrv/mscep/mscep.dll.
	URL string
	// Floor is the weakest content cipher and digest Discover accepts;
	// nil means DefaultFloor (see floor.go).
	Floor *Floor
	// CAIdentifier is sent as GetCACert's message parameter, for servers
	// that host several CAs.
	CAIdentifier string
	// RootCAs trusts an https URL's server certificate; nil means the
	// system roots.
	RootCAs *x509.CertPool
	// InsecureSkipVerify turns off TLS server verification. It is logged as
	// a warning on every client built with it.
	InsecureSkipVerify bool
	// Timeout bounds each HTTP round trip; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes lowers the cap of every answer below its
	// operation's own (MaxCACapsBytes, MaxCACertBytes,
	// MaxPKIOperationBytes); zero means those alone.
	MaxResponseBytes int64
	// MaxGETQueryBytes caps a GET PKIOperation's query, refused before
	// sending; zero means MaxGETQueryBytes (65534).
	MaxGETQueryBytes int
	// Egress is where the client may connect (checked on every address it
	// dials, after DNS resolution); nil means egress.Default(), which
	// refuses link-local, cloud metadata and unspecified addresses.
	Egress *egress.Policy
	// Transport replaces the HTTP transport (tests, proxies); nil means one
	// built from the fields above, with the proxy from the environment.
	// Egress applies only to a transport the client builds.
	Transport http.RoundTripper
	// Logger receives debug lines for each round trip; message contents,
	// challenges and keys are never logged.
	Logger logr.Logger
	// Observe, when set, is called after every HTTP round trip with the
	// operation, the HTTP status (0 when none) and the duration; metrics
	// hang here.
	Observe func(op string, status int, d time.Duration)
}

// Client talks to one SCEP server. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL
	http *http.Client
	// httpOnce sends PKIOperation GETs, each on a connection of its own:
	// Go's Transport sends an idempotent request (GET) again by itself when
	// a reused connection fails before the answer, and the server may
	// already have acted on a PKCSReq (NDES then refuses its spent one-time
	// password, another server issues twice). It never resends on a fresh
	// connection. POST is never resent, and keeps its connections.
	httpOnce *http.Client
	maxBody  int64
	maxGET   int

	mu   sync.Mutex
	caps *scep.Capabilities
	// postBroken is set once the server answered a POST PKIOperation with
	// an empty 200 (NDES on Windows Server 2012 R2 announces
	// POSTPKIOperation and does that): GET from then on.
	postBroken bool
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("SCEP URL %q: %w", cfg.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("SCEP URL %q: scheme must be http or https", cfg.URL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("SCEP URL %q has no host", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	c := &Client{cfg: cfg, base: u, maxBody: cfg.MaxResponseBytes, maxGET: cfg.MaxGETQueryBytes}
	if c.maxGET <= 0 {
		c.maxGET = MaxGETQueryBytes
	}
	rt := cfg.Transport
	if rt == nil {
		policy := cfg.Egress
		if policy == nil {
			policy = egress.Default()
		}
		if err := policy.CheckHost(u.Hostname()); err != nil {
			return nil, fmt.Errorf("SCEP URL %s: %w", u.Redacted(), err)
		}
		tr := policy.Secure(http.DefaultTransport.(*http.Transport).Clone())
		tr.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		if cfg.InsecureSkipVerify {
			tr.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // explicit, logged opt-in
			cfg.Logger.Info("WARNING: TLS verification of the SCEP server is turned off; anyone on the path can answer for it", "url", cfg.URL)
		}
		rt = tr
	}
	c.http = &http.Client{Transport: rt, Timeout: cfg.Timeout, CheckRedirect: egress.SameOriginRedirects("the SCEP server", egress.MaxRedirects)}
	c.httpOnce = c.http
	if tr, ok := rt.(*http.Transport); ok {
		own := tr.Clone()
		own.DisableKeepAlives = true
		c.httpOnce = &http.Client{Transport: own, Timeout: cfg.Timeout, CheckRedirect: c.http.CheckRedirect}
	}
	return c, nil
}

// URL returns the server's endpoint.
func (c *Client) URL() string { return c.cfg.URL }

// HTTPError is a non-2xx answer. Its message says what kind of answer it
// was (status, content type, size), never what it said: the server may be
// anyone's. Excerpt keeps the start of the body for debug logs and for
// scepctl; it never goes into a status or an Event.
type HTTPError struct {
	// Operation is the SCEP operation that failed.
	Operation string
	// StatusCode is the HTTP status.
	StatusCode int
	// RetryAfter is the server's Retry-After, if it sent one.
	RetryAfter time.Duration
	// ContentType is the answer's media type, when it has the shape of
	// one (servertext.ContentType).
	ContentType string
	// Body says what kind of body came, e.g. "an HTML page of 1234 bytes"
	// (servertext.Describe).
	Body string
	// Recognized, when set, is our reading of a page we know, e.g. IIS's
	// 404.15 for a query string over its limit.
	Recognized string
	// Excerpt is the start of the body as quoted, cleaned text, at most
	// 200 bytes (servertext.Excerpt); "" for binary bodies. Only for debug
	// logs and an admin's terminal.
	Excerpt string
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("SCEP %s answered HTTP %d", e.Operation, e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		msg += " (" + text + ")"
	}
	if e.Body != "" {
		msg += " with " + e.Body
		if e.ContentType != "" {
			msg += fmt.Sprintf(" (Content-Type %q)", e.ContentType)
		}
	}
	if e.Recognized != "" {
		msg += ": " + e.Recognized
	}
	if e.StatusCode == http.StatusNotFound && e.Operation != OpPKIOperation {
		msg += " (nothing serves SCEP at this URL: check its path, e.g. /scep or /certsrv/mscep/mscep.dll)"
	}
	return msg
}

// Temporary reports whether trying again later may help (5xx, 429, 408).
func (e *HTTPError) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout
}

// ContentError is a 2xx answer whose body is not what the operation returns,
// such as an HTML page served with status 200. Like HTTPError, its message
// describes the answer without quoting it.
type ContentError struct {
	// Operation is the SCEP operation.
	Operation string
	// ContentType is the media type the server said it sent, when it has
	// the shape of one (servertext.ContentType).
	ContentType string
	// Body says what kind of body came (servertext.Describe).
	Body string
	// Excerpt is the start of the body as quoted, cleaned text, for debug
	// logs and an admin's terminal only (see HTTPError.Excerpt).
	Excerpt string
	// Err is the parse failure, in our words.
	Err error
}

func (e *ContentError) Error() string {
	kind := e.Body
	if kind == "" {
		kind = "the answer"
	}
	if e.ContentType != "" {
		kind += fmt.Sprintf(" (Content-Type %q)", e.ContentType)
	}
	return fmt.Sprintf("SCEP %s answer is not a SCEP message: %s: %v", e.Operation, kind, e.Err)
}

// Unwrap returns the parse failure.
func (e *ContentError) Unwrap() error { return e.Err }

// TooLargeError is an answer longer than its operation may be; reading
// stopped at the cap.
type TooLargeError struct {
	// Operation is the SCEP operation.
	Operation string
	// Limit is the cap, in bytes.
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("SCEP %s answer is larger than %d bytes, the most this operation may return; is the URL a SCEP endpoint?", e.Operation, e.Limit)
}

// ErrQueryTooLong is returned for a GET PKIOperation whose query exceeds the
// limit; see QueryTooLongError.
var ErrQueryTooLong = errors.New("SCEP GET query too long")

// QueryTooLongError says a message cannot be sent with GET.
type QueryTooLongError struct {
	// Length and Limit are the query's size and the limit, in bytes.
	Length, Limit int
}

func (e *QueryTooLongError) Error() string {
	return fmt.Sprintf("the PKIOperation GET query would be %d bytes, over the %d-byte limit set for this server, "+
		"and the server does not announce POSTPKIOperation: enable POST on the server, raise IIS's requestFiltering maxQueryString "+
		"(NDES: also the MaxFieldLength/MaxRequestBytes HTTP.sys keys), or use a smaller key", e.Length, e.Limit)
}

// Is makes errors.Is(err, ErrQueryTooLong) work.
func (e *QueryTooLongError) Is(target error) bool { return target == ErrQueryTooLong }

func (c *Client) endpoint(op, message string) string {
	u := *c.base
	q := u.Query()
	q.Set("operation", op)
	if message != "" {
		q.Set("message", message)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// do performs one round trip and returns the body of a 2xx answer.
func (c *Client) do(ctx context.Context, op string, req *http.Request) ([]byte, string, error) {
	start := time.Now()
	hc := c.http
	if op == OpPKIOperation && req.Method == http.MethodGet {
		hc = c.httpOnce
	}
	resp, err := hc.Do(req.WithContext(ctx))
	status := 0
	defer func() {
		if c.cfg.Observe != nil {
			c.cfg.Observe(op, status, time.Since(start))
		}
	}()
	if err != nil {
		// url.Error repeats the whole URL, which for a GET PKIOperation is
		// kilobytes of base64; the endpoint is named once instead.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, "", fmt.Errorf("SCEP %s to %s: %w", op, c.base.Redacted(), egress.ScrubTransportError(err))
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	limit := maxBytes(op)
	if c.maxBody > 0 && c.maxBody < limit {
		limit = c.maxBody
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("SCEP %s to %s: reading the answer: %w", op, c.base.Redacted(), egress.ScrubTransportError(err))
	}
	c.cfg.Logger.V(1).Info("SCEP round trip", "operation", op, "method", req.Method, "status", resp.StatusCode, "bytes", len(body), "duration", time.Since(start))
	if int64(len(body)) > limit {
		return nil, "", &TooLargeError{Operation: op, Limit: limit}
	}
	ct := resp.Header.Get("Content-Type")
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &HTTPError{
			Operation:   op,
			StatusCode:  resp.StatusCode,
			ContentType: servertext.ContentType(ct),
			Body:        servertext.Describe(body, ct),
			Recognized:  recognize(resp.StatusCode, body),
			Excerpt:     servertext.Excerpt(body),
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			e.RetryAfter = parseRetryAfter(ra)
		}
		c.cfg.Logger.V(1).Info("SCEP server answered with an HTTP error", "operation", op, "status", resp.StatusCode, "excerpt", e.Excerpt)
		return nil, ct, e
	}
	return body, ct, nil
}

// recognize reads error pages whose meaning we know, in our words.
func recognize(status int, body []byte) string {
	if status == http.StatusNotFound && bytes.Contains(body, []byte("404.15")) {
		return "IIS refused the query string as too long (404.15): the server's requestFiltering maxQueryString is lower than the GET message needs; enable POSTPKIOperation or raise the limit"
	}
	return ""
}

// contentError describes a 2xx answer that is not what op returns, and
// logs its excerpt at debug verbosity.
func (c *Client) contentError(op, ct string, body []byte, err error) *ContentError {
	e := &ContentError{Operation: op, ContentType: servertext.ContentType(ct), Body: servertext.Describe(body, ct), Excerpt: servertext.Excerpt(body), Err: err}
	c.cfg.Logger.V(1).Info("SCEP server's answer is not a SCEP message", "operation", op, "excerpt", e.Excerpt)
	return e
}

func parseRetryAfter(v string) time.Duration {
	var secs int
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// GetCACaps returns the server's capabilities, cached after the first
// success. A server that refuses the operation, answers with an empty body
// or closes the connection without an answer (NDES on Windows Server 2003
// and 2008 without the GetCACaps hotfix does the last two) gets the
// minimal set, as RFC 8894 asks; other transport errors (no connection at
// all, a timeout) are returned.
func (c *Client) GetCACaps(ctx context.Context) (scep.Capabilities, error) {
	c.mu.Lock()
	cached := c.caps
	c.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	return c.RefreshCACaps(ctx)
}

// RefreshCACaps asks the server again and replaces the cached capabilities.
func (c *Client) RefreshCACaps(ctx context.Context) (scep.Capabilities, error) {
	req, err := http.NewRequest(http.MethodGet, c.endpoint(OpGetCACaps, ""), nil)
	if err != nil {
		return scep.Capabilities{}, err
	}
	body, _, err := c.do(ctx, OpGetCACaps, req)
	var caps scep.Capabilities
	var httpErr *HTTPError
	switch {
	case err == nil:
		caps = scep.ParseCapabilities(body)
	case errors.As(err, &httpErr):
		c.cfg.Logger.V(1).Info("GetCACaps refused; assuming the minimal capabilities", "status", httpErr.StatusCode)
		caps = scep.MinimalCapabilities()
	case closedWithoutAnswer(err):
		c.cfg.Logger.V(1).Info("GetCACaps: the server closed the connection without an answer (old NDES); assuming the minimal capabilities")
		caps = scep.MinimalCapabilities()
	default:
		return scep.Capabilities{}, err
	}
	c.mu.Lock()
	c.caps = &caps
	c.mu.Unlock()
	return caps, nil
}

// closedWithoutAnswer reports whether err is a connection the server
// closed or reset after taking the request, before any answer: not a
// dial failure, a timeout or a refused destination.
func closedWithoutAnswer(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// GetCACert returns the server's CA and RA certificates, classified.
func (c *Client) GetCACert(ctx context.Context) (*scep.CACerts, error) {
	req, err := http.NewRequest(http.MethodGet, c.endpoint(OpGetCACert, c.cfg.CAIdentifier), nil)
	if err != nil {
		return nil, err
	}
	body, ct, err := c.do(ctx, OpGetCACert, req)
	if err != nil {
		return nil, err
	}
	certs, err := scep.ParseCACerts(body, ct)
	if err != nil {
		return nil, c.contentError(OpGetCACert, ct, body, err)
	}
	return certs, nil
}

// PKIOperation sends a DER pkiMessage and returns the DER reply. POST is used
// when caps allow it; otherwise GET, failing with *QueryTooLongError when
// the query would not fit.
//
// A POST answered with HTTP 200 and no body at all is sent again with GET,
// and this client uses GET from then on: NDES on Windows Server 2012 R2
// announces POSTPKIOperation but answers POST so, without acting on it.
func (c *Client) PKIOperation(ctx context.Context, caps scep.Capabilities, msg []byte) ([]byte, error) {
	c.mu.Lock()
	post := caps.POST() && !c.postBroken
	c.mu.Unlock()
	if post {
		body, err := c.pkiOperation(ctx, true, msg)
		if !errors.Is(err, errEmptyAnswer) {
			return body, err
		}
		c.mu.Lock()
		c.postBroken = true
		c.mu.Unlock()
		c.cfg.Logger.Info("the SCEP server announces POSTPKIOperation but answered a POST with an empty HTTP 200 (as NDES on Windows Server 2012 R2 does); using GET", "url", c.base.Redacted())
	}
	return c.pkiOperation(ctx, false, msg)
}

// errEmptyAnswer is a 2xx PKIOperation answer without a body.
var errEmptyAnswer = errors.New("the answer is empty")

// pkiOperation sends msg once, with POST or GET.
func (c *Client) pkiOperation(ctx context.Context, post bool, msg []byte) ([]byte, error) {
	var req *http.Request
	var err error
	if post {
		req, err = http.NewRequest(http.MethodPost, c.endpoint(OpPKIOperation, ""), bytes.NewReader(msg))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-pki-message")
	} else {
		// RFC 8894 section 4.1: standard base64, then URL-escaped (the
		// URL-safe alphabet is not what servers decode).
		u := c.endpoint(OpPKIOperation, base64.StdEncoding.EncodeToString(msg))
		if q := len(u) - strings.Index(u, "?") - 1; q > c.maxGET {
			return nil, &QueryTooLongError{Length: q, Limit: c.maxGET}
		}
		req, err = http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
	}
	body, ct, err := c.do(ctx, OpPKIOperation, req)
	if err != nil {
		return nil, err
	}
	// A pkiMessage is a DER SEQUENCE; anything else (an HTML page served
	// with 200, a proxy's text) is reported as what it is. The full parse
	// happens once, in scep.Message.ReadReply.
	switch {
	case len(body) == 0:
		return nil, c.contentError(OpPKIOperation, ct, body, errEmptyAnswer)
	case len(body) < 2 || body[0] != 0x30:
		return nil, c.contentError(OpPKIOperation, ct, body, errors.New("it does not start like DER"))
	}
	return body, nil
}
