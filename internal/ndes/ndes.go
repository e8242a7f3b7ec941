// Package ndes fetches one-time enrollment challenge passwords from the
// admin page of Microsoft's Network Device Enrollment Service
// (/certsrv/mscep_admin/), which hands out a fresh password on every GET to
// an account it trusts. It speaks HTTP with NTLM, Kerberos (Negotiate) or
// Basic authentication,
// decodes the page (UTF-16 more often than not) and tells a password from
// NDES's refusals. It knows nothing of SCEP messages: the password goes
// into a CSR elsewhere.
package ndes

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Azure/go-ntlmssp"
	"github.com/go-logr/logr"

	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/servertext"
)

// authScheme is what is repeated of a WWW-Authenticate scheme name, and
// maxSchemes how many: IIS offers Negotiate, NTLM, Basic or a few more.
var authScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,31}$`)

const maxSchemes = 6

// Auth is how the client authenticates to IIS in front of the admin page.
type Auth string

// Authentication schemes.
const (
	// AuthNTLM is Windows authentication, NDES's default: the password
	// never crosses the wire, but the handshake binds the TCP connection.
	AuthNTLM Auth = "NTLM"
	// AuthBasic sends user name and password with every request, so it is
	// only used over https unless Config.AllowPlainHTTP says otherwise.
	AuthBasic Auth = "Basic"
	// AuthKerberos is HTTP Negotiate with a Kerberos ticket (SPNEGO), what
	// IIS keeps when NTLM is turned off (Microsoft's KB5005413 hardening).
	// It needs Config.Kerberos; the ticket is channel-bound to the TLS
	// certificate over https (Extended Protection).
	AuthKerberos Auth = "Kerberos"
)

// ParseAuth accepts "ntlm", "basic" or "kerberos" (or "negotiate") in any
// case; "" means AuthNTLM.
func ParseAuth(s string) (Auth, error) {
	switch {
	case s == "", strings.EqualFold(s, string(AuthNTLM)):
		return AuthNTLM, nil
	case strings.EqualFold(s, string(AuthBasic)):
		return AuthBasic, nil
	case strings.EqualFold(s, string(AuthKerberos)), strings.EqualFold(s, "Negotiate"):
		return AuthKerberos, nil
	}
	return "", fmt.Errorf("authentication %q: must be NTLM, Kerberos or Basic", s)
}

// Defaults for Config's zero values.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 1 << 20
)

// maxChallengeBody bounds the 401 pages buffered during the NTLM handshake.
const maxChallengeBody = 64 << 10

// Config describes one NDES admin page and the account that may use it.
type Config struct {
	// URL is the admin page, e.g. https://ndes.corp/certsrv/mscep_admin/.
	// It must not carry credentials.
	URL string
	// Auth is the scheme IIS expects; "" means AuthNTLM.
	Auth Auth
	// Username is DOMAIN\user or user@domain (for NTLM, a bare name is
	// looked up in the server's own domain). For Kerberos it is the client
	// principal, user or user@REALM (DOMAIN\user is read as user).
	Username string
	// Password is Username's password. It is sent only in the
	// Authorization header (Basic), used to answer the NTLM challenge or
	// to log in to the KDC, and is never logged or put in an error. With
	// Kerberos a keytab may replace it.
	Password string
	// Kerberos configures AuthKerberos; ignored otherwise.
	Kerberos *Kerberos
	// AllowPlainHTTP permits an http:// URL. Credentials then cross the
	// network unprotected: Basic in clear text, NTLM open to relaying (to
	// AD CS web enrollment, for one). New refuses an http URL without it,
	// and warns with it.
	AllowPlainHTTP bool
	// RootCAs trusts an https URL's server certificate; nil means the
	// system roots.
	RootCAs *x509.CertPool
	// InsecureSkipVerify turns off TLS server verification; logged as a
	// warning.
	InsecureSkipVerify bool
	// Timeout bounds one fetch of the page, the whole NTLM handshake
	// included (not the wait for a concurrent call's turn); zero means
	// DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes caps the page's size; zero means 1 MiB.
	MaxResponseBytes int64
	// Egress is where the client may connect (checked on every address it
	// dials, after DNS resolution); nil means egress.Default().
	Egress *egress.Policy
	// Transport replaces the HTTP transport (tests); nil means a transport
	// of this Client's own, built from the fields above. For NTLM it must
	// keep connections alive, as the handshake is bound to one. Egress
	// applies only to a transport the client builds.
	Transport http.RoundTripper
	// Logger receives a debug line per fetch and warnings about insecure
	// settings. Passwords, the account's and NDES's, are never logged.
	Logger logr.Logger
}

// Client fetches challenge passwords from one admin page with one account.
// It is safe for concurrent use; fetches are serialised (see Password).
type Client struct {
	cfg     Config
	page    *url.URL
	http    *http.Client
	maxBody int64
	// turn admits one fetch at a time, so that two NTLM handshakes never
	// interleave on the client's single connection; a channel rather than
	// a mutex lets a waiting caller give up with its context.
	turn chan struct{}
	// closeIdle releases the kept-alive connection of a transport we built.
	closeIdle func()
}

// New checks cfg and returns a Client. Nothing is sent until Password.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		// url.Parse's error repeats the URL, credentials and all.
		return nil, errors.New("the NDES admin URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("NDES admin URL %s: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("NDES admin URL %s has no host", u.Redacted())
	}
	if u.User != nil {
		return nil, fmt.Errorf("NDES admin URL %s carries credentials; give them as user name and password instead", u.Redacted())
	}
	auth, err := ParseAuth(string(cfg.Auth))
	if err != nil {
		return nil, err
	}
	cfg.Auth = auth
	hasKeytab := auth == AuthKerberos && cfg.Kerberos != nil && len(cfg.Kerberos.Keytab) > 0
	if cfg.Username == "" || (cfg.Password == "" && !hasKeytab) {
		if auth == AuthKerberos {
			return nil, fmt.Errorf("NDES admin page %s: a user name and a password or keytab are required", u.Redacted())
		}
		return nil, fmt.Errorf("NDES admin page %s: a user name and a password are required", u.Redacted())
	}
	if u.Scheme == "http" {
		if !cfg.AllowPlainHTTP {
			if auth == AuthBasic {
				return nil, fmt.Errorf("NDES admin page %s: Basic authentication over plain http would send the password of %s in clear; use https", u.Redacted(), cfg.Username)
			}
			if auth == AuthKerberos {
				return nil, fmt.Errorf("NDES admin page %s: Kerberos over plain http sends a ticket anyone on the path can replay to the page, with no TLS certificate to bind it to; use https", u.Redacted())
			}
			return nil, fmt.Errorf("NDES admin page %s: NTLM over plain http can be relayed by anyone on the path (to AD CS web enrollment, for one) with the rights of %s; use https", u.Redacted(), cfg.Username)
		}
		switch auth {
		case AuthBasic:
			cfg.Logger.Info("WARNING: Basic authentication over plain http: anyone on the path can read the account's password", "url", u.Redacted(), "user", cfg.Username)
		case AuthKerberos:
			cfg.Logger.Info("WARNING: Kerberos over plain http: anyone on the path can replay the ticket to the page while it is valid", "url", u.Redacted(), "user", cfg.Username)
		default:
			cfg.Logger.Info("WARNING: NTLM over plain http: anyone on the path can relay the account's authentication", "url", u.Redacted(), "user", cfg.Username)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	c := &Client{cfg: cfg, page: u, maxBody: cfg.MaxResponseBytes, turn: make(chan struct{}, 1), closeIdle: func() {}}
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxResponseBytes
	}
	policy := cfg.Egress
	if policy == nil {
		policy = egress.Default()
	}
	var login *kerberosLogin
	if auth == AuthKerberos {
		if login, err = newKerberosLogin(cfg, u.Hostname(), policy); err != nil {
			return nil, fmt.Errorf("NDES admin page %s: %w", u.Redacted(), err)
		}
	}
	rt := cfg.Transport
	if rt == nil {
		if err := policy.CheckHost(u.Hostname()); err != nil {
			return nil, fmt.Errorf("NDES admin page %s: %w", u.Redacted(), err)
		}
		tr := policy.Secure(newTransport(cfg))
		c.closeIdle = tr.CloseIdleConnections
		rt = tr
	}
	switch auth {
	case AuthNTLM:
		rt = ntlmssp.Negotiator{RoundTripper: handshakeTransport{rt}}
	case AuthKerberos:
		nt := negotiateTransport{next: handshakeTransport{rt}, login: login, policy: policy, logger: cfg.Logger}
		if login.fallback {
			nt.ntlm = ntlmssp.Negotiator{RoundTripper: handshakeTransport{rt}}
		}
		rt = nt
	}
	// The timeout is the fetch's context deadline rather than
	// http.Client.Timeout, so that fetch can tell a handshake cut short by
	// it from a refusal.
	c.http = &http.Client{Transport: rt, CheckRedirect: egress.SameOriginRedirects("the NDES admin page", egress.MaxRedirects)}
	return c, nil
}

// newTransport builds the Client's own transport. NTLM authenticates the
// TCP connection, not the request: NEGOTIATE, CHALLENGE and AUTHENTICATE
// must travel over one kept-alive HTTP/1.1 connection. Hence a transport per
// Client (http.DefaultTransport's pool is shared and may hand the next
// message another connection), keep-alives on, at most one connection, and
// no HTTP/2, whose multiplexing IIS refuses for Windows authentication.
func newTransport(cfg Config) *http.Transport {
	tlsConfig := &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if cfg.InsecureSkipVerify {
		tlsConfig.InsecureSkipVerify = true //nolint:gosec // explicit, logged opt-in
		cfg.Logger.Info("WARNING: TLS verification of the NDES admin page is turned off; anyone on the path can answer for it and collect enrollment passwords", "url", cfg.URL)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Transport{
		// Corporate proxies are the norm where NDES runs. Through an https
		// CONNECT tunnel NTLM works as directly; a plain-http proxy must
		// keep client and server connections paired, as NTLM-aware
		// proxies do.
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		Protocols:           &protocols,
		MaxConnsPerHost:     1,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
	}
}

// handshakeTransport sits under go-ntlmssp's Negotiator and fixes two
// things it does not do for us. It reads a 401 answer's body into memory
// and closes the original, so that the connection is free again before the
// next handshake message goes out: the Negotiator keeps the first 401 open
// until the handshake ends, and with one connection per host the NEGOTIATE
// message would wait for it forever (with more, it would open a second
// connection). And it records transport errors, which the Negotiator
// swallows mid-handshake, answering with the first 401 instead: without the
// record a dropped connection or a timeout would read as wrong credentials.
type handshakeTransport struct{ next http.RoundTripper }

// handshakeTrace is where handshakeTransport records the last transport
// error of one fetch, and negotiateTransport the SPN of the Kerberos ticket
// it sent; it travels in the request's context.
type handshakeTrace struct {
	err       error
	ticketFor string
}

type handshakeTraceKey struct{}

// RoundTrip sends req, buffering a 401's body and recording errors.
func (h handshakeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.next.RoundTrip(req)
	if err != nil {
		if trace, ok := req.Context().Value(handshakeTraceKey{}).(*handshakeTrace); ok {
			trace.err = err
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxChallengeBody))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// URL returns the admin page's address.
func (c *Client) URL() string { return c.page.Redacted() }

// CloseIdleConnections drops the kept-alive (and, with NTLM, authenticated)
// connection of a Client whose transport it built; callers done with a
// Client call it to free the socket early.
func (c *Client) CloseIdleConnections() { c.closeIdle() }

// Password fetches one fresh challenge password. NDES makes a new one on
// every visit and each is good for one enrollment, within 60 minutes: call
// Password right before each PKCSReq, again for every retry, and never
// cache the result. Calls on one Client take turns.
//
// Errors: ErrCacheFull (see IsCacheFull), *AuthError (see IsAuthError),
// *PageError, or a transport error wrapped with the page's address.
func (c *Client) Password(ctx context.Context) (string, error) {
	select {
	case c.turn <- struct{}{}:
		defer func() { <-c.turn }()
	case <-ctx.Done():
		return "", fmt.Errorf("NDES admin page %s: %w", c.URL(), ctx.Err())
	}
	pw, err := c.fetch(ctx)
	if err != nil {
		return "", fmt.Errorf("NDES admin page %s: %w", c.URL(), err)
	}
	return pw, nil
}

func (c *Client) fetch(ctx context.Context) (string, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	trace := &handshakeTrace{}
	ctx = context.WithValue(ctx, handshakeTraceKey{}, trace)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.page.String(), nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	req.Header.Set("Accept", "text/html")
	// Every GET mints a password; a cached page would hand out one already
	// given, which NDES then refuses as used.
	req.Header.Set("Cache-Control", "no-cache, no-store")
	req.Header.Set("Pragma", "no-cache")
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats method and URL; the caller names the page once.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		var authErr *AuthError
		if IsKerberosError(err) || errors.As(err, &authErr) || egress.IsRefused(err) {
			return "", err // our own words, nothing of the peer's to scrub
		}
		return "", egress.ScrubTransportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return "", fmt.Errorf("reading the page: %w", egress.ScrubTransportError(err))
	}
	c.cfg.Logger.V(1).Info("NDES admin page fetched", "url", c.URL(), "auth", c.cfg.Auth, "user", c.cfg.Username,
		"status", resp.StatusCode, "bytes", len(body), "duration", time.Since(start))
	if int64(len(body)) > c.maxBody {
		return "", fmt.Errorf("the page is larger than %d bytes", c.maxBody)
	}
	ct := resp.Header.Get("Content-Type")
	text, err := Decode(body, ct)
	if err != nil {
		return "", fmt.Errorf("decoding the page: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && trace.err != nil:
		return "", fmt.Errorf("the NTLM handshake broke off: %w", egress.ScrubTransportError(trace.err))
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		e := &AuthError{StatusCode: resp.StatusCode, User: c.cfg.Username, Detail: c.refusalDetail(resp, trace), Excerpt: excerpt(text)}
		c.cfg.Logger.V(1).Info("NDES admin page refused the account", "url", c.URL(), "status", resp.StatusCode, "excerpt", e.Excerpt)
		return "", e
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		e := &PageError{StatusCode: resp.StatusCode, Body: servertext.Describe(body, ct), Excerpt: excerpt(text)}
		c.cfg.Logger.V(1).Info("NDES admin page answered with an HTTP error", "url", c.URL(), "status", resp.StatusCode, "excerpt", e.Excerpt)
		return "", e
	}
	pw, err := ExtractPassword(text)
	var authErr *AuthError
	var pageErr *PageError
	switch {
	case errors.As(err, &authErr):
		authErr.StatusCode, authErr.User = resp.StatusCode, c.cfg.Username
	case errors.As(err, &pageErr):
		pageErr.StatusCode = resp.StatusCode
		pageErr.Body = servertext.Describe(body, ct)
		if pageErr.Excerpt != "" {
			c.cfg.Logger.V(1).Info("NDES admin page holds no challenge password", "url", c.URL(), "excerpt", pageErr.Excerpt)
		}
	}
	return pw, err
}

// refusalDetail says, when IIS does not offer the scheme we speak, the
// schemes it does: the usual cause of a 401 that no password fixes. The
// page's own text is not repeated (see AuthError.Excerpt).
func (c *Client) refusalDetail(resp *http.Response, trace *handshakeTrace) string {
	if resp.StatusCode != http.StatusUnauthorized {
		return ""
	}
	if trace.ticketFor != "" {
		return "IIS refused the Kerberos ticket for " + trace.ticketFor + ": check that this SPN is registered to the account the admin page runs as (setspn -L ACCOUNT), that its keys are current, and, as Extended Protection binds the ticket to the TLS certificate, that nothing between here and IIS terminates TLS"
	}
	// Only the scheme names: the rest may be an NTLM challenge token.
	offered := offeredSchemes(resp)
	speaks := func(s string) bool {
		switch c.cfg.Auth {
		case AuthNTLM:
			return strings.EqualFold(s, "NTLM") || strings.EqualFold(s, "Negotiate")
		case AuthKerberos:
			return strings.EqualFold(s, "Negotiate")
		}
		return strings.EqualFold(s, "Basic")
	}
	if len(offered) == 0 || slices.ContainsFunc(offered, speaks) {
		return ""
	}
	return fmt.Sprintf("the server offers %s, not %s", strings.Join(offered, ", "), c.cfg.Auth)
}
