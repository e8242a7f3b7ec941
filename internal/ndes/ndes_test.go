package ndes

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"golang.org/x/crypto/md4" //nolint:staticcheck // NTLM is built on MD4; the test server has to compute it

	"github.com/scep-operator/scep-operator/internal/egress"
)

const (
	testUser       = `CORP\svc-scep`
	testPassword   = "Acc0unt-S3cret!"
	testThumbprint = "3B1F4C2E 8D7A6B5C 4E3F2A1B 0C9D8E7F"
)

// adminPage is the mscep_admin page as NDES on Windows Server writes it:
// several <B> elements, the CA thumbprint among them, before the password.
func adminPage(password string) string {
	return `<HTML><Head><Meta HTTP-Equiv="Content-Type" Content="text/html; charset=UTF-16">
<Title>Network Device Enrollment Service</Title></Head>
<Body BgColor=#FFFFFF><Font ID=locPageFont Face="Arial">
<Table Border=0 CellSpacing=0 CellPadding=4 Width=100% BgColor=#008080>
<TR><TD><Font Color=#FFFFFF><LocID ID=locMSCertSrv><Font Face="Arial" Size=-1><B><I>Microsoft</I></B></Font></LocID></Font></TD>
<TD ID=locPageTitle><Font Face="Arial" Size=-1 Color=#FFFFFF><B>Network Device Enrollment Service</B></Font></TD></TR>
</Table>
<P ID=locPageDesc> Network Device Enrollment Service allows you to obtain certificates for routers or other network devices using the Simple Certificate Enrollment Protocol (SCEP).
<P> To complete certificate enrollment for your network device you will need the following information:
<P> The thumbprint (hash value) for the CA certificate is: <B> ` + testThumbprint + ` </B>
<P> The enrollment challenge password is: <B> ` + password + ` </B>
<P> This password can be used only once and will expire within 60 minutes.
<P> Each enrollment requires a new challenge password. You can refresh this web page to obtain a new challenge password.
<P ID=locPageDesc2> For more information see <A HREF=http://go.microsoft.com/fwlink/?LinkId=67852>Using Network Device Enrollment Service</A>.
</Font></Body></HTML>`
}

func ndesMessagePage(sentence string) string {
	return `<HTML><Head><Title>Network Device Enrollment Service</Title></Head>
<Body BgColor=#FFFFFF><Font ID=locPageFont Face="Arial">
<P ID=locPageDesc> Network Device Enrollment Service allows you to obtain certificates for routers or other network devices using the Simple Certificate Enrollment Protocol (SCEP).
<P> ` + sentence + `
</Font></Body></HTML>`
}

const iis401 = `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head>
<title>401 - Unauthorized: Access is denied due to invalid credentials.</title>
<style type="text/css"><!-- body{margin:0;font-size:.7em;font-family:Verdana, Arial, Helvetica, sans-serif;background:#EEEEEE;} --></style>
</head><body><div id="header"><h1>Server Error</h1></div>
<div id="content"><div class="content-container"><fieldset>
<h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2>
<h3>You do not have permission to view this directory or page using the credentials that you supplied.</h3>
</fieldset></div></div></body></html>`

func utf16Bytes(s string, bigEndian, bom bool) []byte {
	units := utf16.Encode([]rune(s))
	if bom {
		units = append([]uint16{0xFEFF}, units...)
	}
	out := make([]byte, 2*len(units))
	for i, u := range units {
		if bigEndian {
			binary.BigEndian.PutUint16(out[2*i:], u)
		} else {
			binary.LittleEndian.PutUint16(out[2*i:], u)
		}
	}
	return out
}

func TestDecode(t *testing.T) {
	page := adminPage("8C4E6D2A1F3B5E79") + " café ✓"
	for _, tc := range []struct {
		name        string
		body        []byte
		contentType string
		want        string
	}{
		{name: "UTF-16LE without BOM or charset (NDES's usual)", body: utf16Bytes(page, false, false), contentType: "text/html", want: page},
		{name: "UTF-16LE with BOM", body: utf16Bytes(page, false, true), contentType: "text/html", want: page},
		{name: "UTF-16BE with BOM", body: utf16Bytes(page, true, true), want: page},
		{name: "UTF-16BE without BOM", body: utf16Bytes(page, true, false), contentType: "text/html", want: page},
		{name: "UTF-16LE labelled UTF-8", body: utf16Bytes(page, false, false), contentType: "text/html; charset=utf-8", want: page},
		{name: "UTF-8 with charset", body: []byte(page), contentType: "text/html; charset=UTF-8", want: page},
		{name: "UTF-8 without charset", body: []byte(page), contentType: "text/html", want: page},
		{name: "UTF-8 without Content-Type", body: []byte(page), want: page},
		{name: "UTF-8 with BOM", body: append([]byte{0xEF, 0xBB, 0xBF}, page...), want: page},
		{name: "UTF-8 labelled UTF-16", body: []byte(page), contentType: "text/html; charset=utf-16", want: page},
		{name: "Latin-1 charset", body: []byte("caf\xe9 <B>x</B>"), contentType: "text/html; charset=ISO-8859-1", want: "café <B>x</B>"},
		{name: "invalid UTF-8 replaced", body: []byte("a\xffb"), want: "a\uFFFDb"},
		{name: "empty", body: nil, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.body, tc.contentType)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Decode = %.80q…, want %.80q…", got, tc.want)
			}
		})
	}
}

func TestExtractPassword(t *testing.T) {
	const pw = "8C4E6D2A1F3B5E79"
	for _, tc := range []struct {
		name      string
		page      string
		want      string
		wantErr   func(error) bool
		errSays   string
		errOmits  string
		excerpt   string // the PageError's excerpt (for debug logs) says this
		wantEmpty bool   // PageError without excerpt
	}{
		{name: "NDES page, thumbprint first", page: adminPage(pw), want: pw},
		{name: "lower-case tags and line breaks", page: strings.NewReplacer("<B>", "<b>", "</B>", "</b >", "password is: ", "password\n   is:\r\n\t").Replace(adminPage(pw)), want: pw},
		{name: "tags and nbsp between sentence and password", page: "The Enrollment Challenge Password is: </P>&nbsp;<P><Font Size=+1><B class=pw>\n" + pw + "\n</B></Font>", want: pw},
		{name: "password with entity", page: "The enrollment challenge password is: <B>AB&amp;CD</B>", want: "AB&CD"},
		{name: "cache full", page: ndesMessagePage("The password cache is full."), wantErr: IsCacheFull, errSays: "PasswordMax"},
		{name: "cache full, other case and spacing", page: ndesMessagePage("THE PASSWORD\n CACHE IS   full."), wantErr: IsCacheFull},
		{name: "no permission", page: ndesMessagePage("You do not have sufficient permission to enroll with SCEP. Please contact your system administrator."), wantErr: IsAuthError, errSays: "sufficient permission"},
		// The page's words stay out of the error (it reaches statuses and
		// Events); the excerpt, for debug logs, has them without markup.
		// A page in another language: no English sentence, but the
		// password in bold, which the excerpt (for debug logs) leaves out.
		{name: "localized admin page", page: "<HTML><Body><P> Das Kennwort lautet: <B> " + pw + " </B><P> Es gilt 60 Minuten.</Body></HTML>", wantErr: isPageError, errOmits: pw, excerpt: "Das Kennwort lautet: … Es gilt 60 Minuten."},
		{name: "IIS error page", page: iis401, wantErr: isPageError, errSays: "holds no enrollment challenge password", errOmits: "401 - Unauthorized", excerpt: "401 - Unauthorized"},
		{name: "garbage", page: "\x00\x01 not html at all", wantErr: isPageError},
		{name: "thumbprint only", page: strings.Replace(adminPage(pw), "The enrollment challenge password is: <B> "+pw+" </B>", "", 1), wantErr: isPageError, errOmits: pw},
		{name: "password not in bold", page: "The enrollment challenge password is: " + pw + "<P>More text <B>bold</B>", wantErr: isPageError, errOmits: pw, wantEmpty: true},
		{name: "text before the bold", page: "The enrollment challenge password is: see <B>" + pw + "</B>", wantErr: isPageError, errOmits: pw, wantEmpty: true},
		{name: "empty bold", page: "The enrollment challenge password is: <B>  </B>", wantErr: isPageError, wantEmpty: true},
		{name: "unclosed bold", page: "The enrollment challenge password is: <B>" + pw, wantErr: isPageError, errOmits: pw, wantEmpty: true},
		// Found by FuzzPage (testdata/fuzz/FuzzPage/bc7ab5eec078ecc3): a
		// stray '<' survived the tag stripper and was returned as the password.
		{name: "markup left in the bold", page: "The enrollment challenge password is:<B><</B>", wantErr: isPageError, wantEmpty: true},
		{name: "unclosed tag in the bold", page: "The enrollment challenge password is: <B>" + pw + "<I</B>", wantErr: isPageError, errOmits: pw, wantEmpty: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExtractPassword(tc.page)
			if tc.wantErr == nil {
				if err != nil || got != tc.want {
					t.Fatalf("ExtractPassword = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil || !tc.wantErr(err) {
				t.Fatalf("ExtractPassword = %q, %v; want another error", got, err)
			}
			if got != "" {
				t.Errorf("password %q returned with error", got)
			}
			if tc.errSays != "" && !strings.Contains(err.Error(), tc.errSays) {
				t.Errorf("error %q does not say %q", err, tc.errSays)
			}
			if tc.errOmits != "" && strings.Contains(err.Error(), tc.errOmits) {
				t.Errorf("error %q contains %q", err, tc.errOmits)
			}
			var pe *PageError
			if tc.wantEmpty && errors.As(err, &pe) && pe.Excerpt != "" {
				t.Errorf("excerpt %q of a page that may hold a password", pe.Excerpt)
			}
			if tc.excerpt != "" && (!errors.As(err, &pe) || !strings.Contains(pe.Excerpt, tc.excerpt) || strings.ContainsAny(pe.Excerpt, "<>") || strings.Contains(pe.Excerpt, "font-family")) {
				t.Errorf("excerpt %v does not say %q as text", pe, tc.excerpt)
			}
			if errors.As(err, &pe) && strings.Contains(pe.Excerpt, pw) {
				t.Errorf("excerpt %s holds the password", pe.Excerpt)
			}
		})
	}
}

func isPageError(err error) bool {
	var pe *PageError
	return errors.As(err, &pe)
}

// passwordMint hands out a fresh random password per page, as NDES does,
// and remembers them.
type passwordMint struct {
	mu     sync.Mutex
	issued []string
}

func (m *passwordMint) next() string {
	b := make([]byte, 8)
	rand.Read(b)
	pw := strings.ToUpper(hex.EncodeToString(b))
	m.mu.Lock()
	m.issued = append(m.issued, pw)
	m.mu.Unlock()
	return pw
}

func (m *passwordMint) all() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.issued...)
}

// basicPage is an admin page behind Basic authentication over TLS. page,
// when set, replaces the admin page's HTML.
func basicPage(t *testing.T, mint *passwordMint, page func() string) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != testUser || p != testPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="ndes"`)
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, iis401)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		if page != nil {
			w.Write(utf16Bytes(page(), false, false))
			return
		}
		w.Write(utf16Bytes(adminPage(mint.next()), false, false))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// logSink collects every log line at every verbosity.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		fmt.Fprintln(&s.buf, prefix, args)
	}, funcr.Options{Verbosity: 9})
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func basicClient(t *testing.T, srv *httptest.Server, password string, logs *logSink) *Client {
	t.Helper()
	c, err := New(Config{
		URL: srv.URL + "/certsrv/mscep_admin/", Auth: AuthBasic, Username: testUser, Password: password,
		Transport: srv.Client().Transport, Logger: logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPasswordBasic(t *testing.T) {
	mint := &passwordMint{}
	srv := basicPage(t, mint, nil)
	logs := &logSink{}
	c := basicClient(t, srv, testPassword, logs)

	first, err := c.Password(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Password(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	issued := mint.all()
	if len(issued) != 2 || first != issued[0] || second != issued[1] || first == second {
		t.Errorf("got %q then %q; the server issued %q", first, second, issued)
	}

	_, err = basicClient(t, srv, "wrong-"+testPassword, logs).Password(context.Background())
	var ae *AuthError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || ae.User != testUser {
		t.Fatalf("wrong password: %v; want *AuthError 401 for %s", err, testUser)
	}
	if !strings.Contains(err.Error(), testUser) || !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("error %q does not name the user, the page and the status", err)
	}
	// IIS's page is for the debug log, not for the error (which reaches
	// statuses and Events).
	if strings.Contains(err.Error(), "invalid credentials") || !strings.Contains(ae.Excerpt, "invalid credentials") {
		t.Errorf("error %q repeats IIS's page, or its excerpt %q lacks it", err, ae.Excerpt)
	}
	assertNoSecrets(t, "wrong password error", err.Error(), append(issued, testPassword, "wrong-"+testPassword)...)
	assertNoSecrets(t, "logs", logs.String(), append(issued, testPassword, "wrong-"+testPassword)...)
	if !strings.Contains(logs.String(), "NDES admin page fetched") {
		t.Errorf("no debug line logged: %s", logs)
	}
}

func TestPasswordPages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		page    string
		check   func(error) bool
		errSays string
	}{
		{name: "cache full", page: ndesMessagePage("The password cache is full."), check: IsCacheFull, errSays: "PasswordMax"},
		{name: "no permission", page: ndesMessagePage("You do not have sufficient permission to enroll with SCEP."), check: IsAuthError, errSays: "user " + testUser},
		{name: "not the admin page", page: "<html><body><h1>Welcome to IIS</h1></body></html>", check: isPageError, errSays: "an HTML page of 98 bytes holds no enrollment challenge password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := basicPage(t, nil, func() string { return tc.page })
			_, err := basicClient(t, srv, testPassword, &logSink{}).Password(context.Background())
			if err == nil || !tc.check(err) {
				t.Fatalf("Password: %v", err)
			}
			if !strings.Contains(err.Error(), tc.errSays) || !strings.Contains(err.Error(), srv.URL) {
				t.Errorf("error %q does not say %q and name the page", err, tc.errSays)
			}
			// "Welcome to IIS" stands for any text of a page that is not
			// NDES's: it never reaches an error.
			assertNoSecrets(t, "error", err.Error(), testPassword, "Welcome to IIS")
		})
	}
}

func TestUnauthorizedSchemeMismatch(t *testing.T) {
	// IIS with only Windows authentication enabled, asked with Basic.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("WWW-Authenticate", "Negotiate")
		w.Header().Add("WWW-Authenticate", "NTLM")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, iis401)
	}))
	defer srv.Close()
	_, err := basicClient(t, srv, testPassword, &logSink{}).Password(context.Background())
	var ae *AuthError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Password: %v; want *AuthError 401", err)
	}
	if !strings.Contains(err.Error(), "offers Negotiate, NTLM, not Basic") {
		t.Errorf("error %q does not say which schemes IIS offers", err)
	}
	assertNoSecrets(t, "error", err.Error(), testPassword)
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		says string
	}{
		{name: "Basic over http", cfg: Config{URL: "http://ndes/certsrv/mscep_admin/", Auth: AuthBasic, Username: testUser, Password: testPassword}, says: "in clear"},
		// Finding 8: NTLM over http can be relayed (to AD CS web enrollment).
		{name: "NTLM over http", cfg: Config{URL: "http://ndes/certsrv/mscep_admin/", Auth: AuthNTLM, Username: testUser, Password: testPassword}, says: "relayed"},
		{name: "metadata address", cfg: Config{URL: "https://169.254.169.254/certsrv/mscep_admin/", Username: testUser, Password: testPassword}, says: "egress policy"},
		{name: "credentials in URL", cfg: Config{URL: "https://u:" + testPassword + "@ndes/certsrv/mscep_admin/", Username: testUser, Password: testPassword}, says: "carries credentials"},
		{name: "bad URL with password", cfg: Config{URL: "https://u:" + testPassword + "@nd es:x/", Username: testUser, Password: testPassword}, says: "does not parse"},
		{name: "ftp", cfg: Config{URL: "ftp://ndes/", Username: testUser, Password: testPassword}, says: "scheme"},
		{name: "no password", cfg: Config{URL: "https://ndes/certsrv/mscep_admin/", Username: testUser}, says: "required"},
		{name: "unknown auth", cfg: Config{URL: "https://ndes/certsrv/mscep_admin/", Auth: "Digest", Username: testUser, Password: testPassword}, says: "NTLM, Kerberos or Basic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("New: %v; want an error saying %q", err, tc.says)
			}
			assertNoSecrets(t, "error", err.Error(), testPassword)
		})
	}
	logs := &logSink{}
	if _, err := New(Config{URL: "http://ndes/certsrv/mscep_admin/", Auth: AuthBasic, Username: testUser, Password: testPassword, AllowPlainHTTP: true, Logger: logs.logger()}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "WARNING: Basic authentication over plain http") {
		t.Errorf("AllowPlainHTTP did not warn: %s", logs)
	}
	if _, err := New(Config{URL: "http://ndes/certsrv/mscep_admin/", Auth: AuthNTLM, Username: testUser, Password: testPassword, AllowPlainHTTP: true, Logger: logs.logger()}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "WARNING: NTLM over plain http") {
		t.Errorf("AllowPlainHTTP with NTLM did not warn: %s", logs)
	}
	assertNoSecrets(t, "logs", logs.String(), testPassword)
}

func TestRedirectToOtherHostRefused(t *testing.T) {
	var leaked atomic.Bool
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
		fmt.Fprint(w, adminPage("LEAKED"))
	}))
	defer other.Close()
	srv := httptest.NewTLSServer(http.RedirectHandler(other.URL+"/certsrv/mscep_admin/", http.StatusFound))
	defer srv.Close()
	_, err := basicClient(t, srv, testPassword, &logSink{}).Password(context.Background())
	if err == nil || !strings.Contains(err.Error(), "only redirects to the same scheme and host") || leaked.Load() {
		t.Fatalf("Password: %v (credentials sent to the other host: %v)", err, leaked.Load())
	}
}

func TestPasswordTooLarge(t *testing.T) {
	srv := basicPage(t, nil, func() string { return strings.Repeat("x", 100) })
	c, err := New(Config{URL: srv.URL, Auth: AuthBasic, Username: testUser, Password: testPassword, Transport: srv.Client().Transport, MaxResponseBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Password(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than 64 bytes") {
		t.Fatalf("Password: %v", err)
	}
}

func assertNoSecrets(t *testing.T, what, s string, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if secret != "" && strings.Contains(s, secret) {
			t.Errorf("%s contains the secret %q: %s", what, secret, s)
		}
	}
}

// ntlmPage is a small NTLM acceptor for connection-handling tests, not an
// emulator of IIS: it runs NEGOTIATE, CHALLENGE, AUTHENTICATE, checks the
// NTLMv2 proof against one account, insists that the handshake stays on
// one TCP connection, and keeps the connection authenticated afterwards as
// IIS does.
type ntlmPage struct {
	mint *passwordMint
	// dropAfterNegotiate closes the connection instead of answering
	// NEGOTIATE.
	dropAfterNegotiate bool

	mu            sync.Mutex
	challenges    map[string][8]byte // by remote address: connection
	authenticated map[string]bool
	conns         atomic.Int32
	handshakes    atomic.Int32
}

func startNTLMPage(t *testing.T, mint *passwordMint) (*ntlmPage, *httptest.Server) {
	t.Helper()
	p := &ntlmPage{mint: mint, challenges: map[string][8]byte{}, authenticated: map[string]bool{}}
	srv := httptest.NewUnstartedServer(p)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return p, srv
}

func (p *ntlmPage) refuse(w http.ResponseWriter, header string) {
	w.Header().Add("WWW-Authenticate", header)
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprint(w, iis401) // a body, as IIS sends: it must be drained before the connection is free
}

func (p *ntlmPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn := r.RemoteAddr
	p.mu.Lock()
	authed := p.authenticated[conn]
	p.mu.Unlock()
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if scheme != "NTLM" && scheme != "Negotiate" {
		if authed {
			p.page(w)
			return
		}
		w.Header().Add("WWW-Authenticate", "Negotiate")
		p.refuse(w, "NTLM")
		return
	}
	msg, err := base64.StdEncoding.DecodeString(token)
	if err != nil || len(msg) < 12 || string(msg[:8]) != "NTLMSSP\x00" {
		p.refuse(w, "NTLM")
		return
	}
	switch binary.LittleEndian.Uint32(msg[8:]) {
	case 1:
		if p.dropAfterNegotiate {
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		var challenge [8]byte
		rand.Read(challenge[:])
		p.mu.Lock()
		p.challenges[conn] = challenge
		p.mu.Unlock()
		p.refuse(w, scheme+" "+base64.StdEncoding.EncodeToString(challengeMessage(challenge)))
	case 3:
		p.mu.Lock()
		challenge, ok := p.challenges[conn]
		delete(p.challenges, conn)
		p.mu.Unlock()
		if !ok || !verifyAuthenticate(msg, challenge) {
			// No challenge on this connection: the handshake moved.
			p.refuse(w, "NTLM")
			return
		}
		p.handshakes.Add(1)
		p.mu.Lock()
		p.authenticated[conn] = true
		p.mu.Unlock()
		p.page(w)
	default:
		p.refuse(w, "NTLM")
	}
}

func (p *ntlmPage) page(w http.ResponseWriter) {
	// No charset and no BOM, as NDES answers.
	w.Header().Set("Content-Type", "text/html")
	w.Write(utf16Bytes(adminPage(p.mint.next()), false, false))
}

// challengeMessage is an NTLM CHALLENGE (MS-NLMP 2.2.1.2): Unicode, NTLM,
// extended session security, target info holding only MsvAvEOL.
func challengeMessage(challenge [8]byte) []byte {
	const flags = 1<<0 | 1<<9 | 1<<19 | 1<<23
	m := make([]byte, 48, 52)
	copy(m, "NTLMSSP\x00")
	binary.LittleEndian.PutUint32(m[8:], 2)
	binary.LittleEndian.PutUint32(m[16:], 48) // empty target name at the end
	binary.LittleEndian.PutUint32(m[20:], flags)
	copy(m[24:], challenge[:])
	binary.LittleEndian.PutUint16(m[40:], 4) // target info: 4 bytes at 48
	binary.LittleEndian.PutUint16(m[42:], 4)
	binary.LittleEndian.PutUint32(m[44:], 48)
	return append(m, 0, 0, 0, 0)
}

// verifyAuthenticate checks an AUTHENTICATE message's NTLMv2 proof
// (MS-NLMP 3.3.2) for testUser and testPassword.
func verifyAuthenticate(msg []byte, challenge [8]byte) bool {
	field := func(at int) []byte {
		if len(msg) < at+8 {
			return nil
		}
		n := int(binary.LittleEndian.Uint16(msg[at:]))
		off := int(binary.LittleEndian.Uint32(msg[at+4:]))
		if off+n > len(msg) {
			return nil
		}
		return msg[off : off+n]
	}
	fromUTF16 := func(b []byte) string {
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		return string(utf16.Decode(u))
	}
	nt, domain, user := field(20), fromUTF16(field(28)), fromUTF16(field(36))
	wantDomain, wantUser, _ := strings.Cut(testUser, `\`)
	if len(nt) < 16+28 || !strings.EqualFold(domain, wantDomain) || !strings.EqualFold(user, wantUser) {
		return false
	}
	h := md4.New()
	h.Write(utf16Bytes(testPassword, false, false))
	ntowf := hmac.New(md5.New, h.Sum(nil))
	ntowf.Write(utf16Bytes(strings.ToUpper(user)+domain, false, false))
	proof := hmac.New(md5.New, ntowf.Sum(nil))
	proof.Write(challenge[:])
	proof.Write(nt[16:])
	return hmac.Equal(proof.Sum(nil), nt[:16])
}

func TestPasswordNTLM(t *testing.T) {
	mint := &passwordMint{}
	p, srv := startNTLMPage(t, mint)
	logs := &logSink{}
	// The Client's own transport, as in production: one connection.
	c, err := New(Config{URL: srv.URL + "/certsrv/mscep_admin/", Username: testUser, Password: testPassword, Timeout: 5 * time.Second, Logger: logs.logger(), AllowPlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	var got []string
	for range 3 {
		pw, err := c.Password(context.Background())
		if err != nil {
			t.Fatalf("Password: %v", err)
		}
		got = append(got, pw)
	}
	if issued := mint.all(); fmt.Sprint(got) != fmt.Sprint(issued) {
		t.Errorf("got %q; the server issued %q", got, issued)
	}
	// One handshake on one connection; later fetches reuse it authenticated.
	if n, h := p.conns.Load(), p.handshakes.Load(); n != 1 || h != 1 {
		t.Errorf("%d connections and %d handshakes for 3 fetches; want 1 and 1", n, h)
	}
	assertNoSecrets(t, "logs", logs.String(), append(got, testPassword)...)
}

func TestPasswordNTLMConcurrent(t *testing.T) {
	mint := &passwordMint{}
	_, srv := startNTLMPage(t, mint)
	c, err := New(Config{URL: srv.URL, Username: testUser, Password: testPassword, Timeout: 5 * time.Second, AllowPlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if _, err := c.Password(context.Background()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(mint.all()); n != 8 {
		t.Errorf("%d passwords issued for 8 calls", n)
	}
}

func TestPasswordNTLMWrongPassword(t *testing.T) {
	mint := &passwordMint{}
	_, srv := startNTLMPage(t, mint)
	logs := &logSink{}
	const wrong = "Not-" + testPassword
	c, err := New(Config{URL: srv.URL, Auth: "ntlm", Username: testUser, Password: wrong, Timeout: 5 * time.Second, Logger: logs.logger(), AllowPlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	_, err = c.Password(context.Background())
	var ae *AuthError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || !strings.Contains(err.Error(), testUser) {
		t.Fatalf("Password: %v; want *AuthError 401 naming %s", err, testUser)
	}
	assertNoSecrets(t, "error", err.Error(), wrong)
	assertNoSecrets(t, "logs", logs.String(), wrong)
	if len(mint.all()) != 0 {
		t.Error("a password was issued to a wrong password")
	}
}

func TestPasswordNTLMHandshakeBrokenIsNotARefusal(t *testing.T) {
	p, srv := startNTLMPage(t, &passwordMint{})
	p.dropAfterNegotiate = true
	c, err := New(Config{URL: srv.URL, Username: testUser, Password: testPassword, Timeout: 5 * time.Second, AllowPlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	_, err = c.Password(context.Background())
	if err == nil || IsAuthError(err) || !strings.Contains(err.Error(), "handshake broke off") {
		t.Fatalf("Password: %v; want a transport error, not a refusal", err)
	}
}

func TestPasswordContextCancelledWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		fmt.Fprint(w, adminPage("AAAA"))
	}))
	defer srv.Close()
	defer close(release)
	c := basicClient(t, srv, testPassword, &logSink{})
	go c.Password(context.Background()) // holds the turn
	select {
	case <-arrived: // the first call has the turn: its request is at the server
	case <-time.After(30 * time.Second):
		t.Fatal("the first Password call never reached the server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Password(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Password: %v; want the context's deadline", err)
	}
}

// TestNoPageTextInErrors: pages that are not NDES's own known ones (an
// IIS or proxy error, a portal, something an SSRF would read) are
// described in errors, never quoted; their text goes to the debug log.
func TestNoPageTextInErrors(t *testing.T) {
	const marker = "SECRET-MARKER-51c2"
	page := "<html><head><title>" + marker + "</title></head><body><p>" + marker + "</p></body></html>"
	for _, tc := range []struct {
		name   string
		status int
		header map[string]string
		says   string
	}{
		{name: "HTTP 500 page", status: http.StatusInternalServerError, says: "HTTP 500 (Internal Server Error) with an HTML page of"},
		{name: "HTTP 401 page", status: http.StatusUnauthorized, header: map[string]string{"WWW-Authenticate": marker + "-scheme-too-long-to-be-a-scheme-name realm=" + marker}, says: "HTTP 401"},
		{name: "HTTP 403 page", status: http.StatusForbidden, says: "HTTP 403"},
		{name: "200 page that is not NDES's", status: http.StatusOK, says: "holds no enrollment challenge password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(tc.status)
				fmt.Fprint(w, page)
			}))
			defer srv.Close()
			logs := &logSink{}
			_, err := basicClient(t, srv, testPassword, logs).Password(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Password: %v; want an error saying %q", err, tc.says)
			}
			assertNoSecrets(t, "error", err.Error(), marker, testPassword)
			if !strings.Contains(logs.String(), marker) {
				t.Errorf("the page's excerpt is not in the debug log: %s", logs)
			}
		})
	}
}

// TestEgressAndRedirectLimits: the admin page client connects only where
// the egress policy allows (nothing reaches a refused server) and follows
// at most 3 redirects on its own host.
func TestEgressAndRedirectLimits(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, r.URL.Path, http.StatusFound)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	policy, err := egress.Parse("", "127.0.0.0/8,::1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{URL: "http://localhost:" + port + "/certsrv/mscep_admin/", Auth: AuthBasic, Username: testUser, Password: testPassword, AllowPlainHTTP: true, Egress: policy})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Password(context.Background())
	if !egress.IsRefused(err) || !strings.Contains(err.Error(), egress.DenyFlag) {
		t.Fatalf("Password = %v, want a refusal naming %s", err, egress.DenyFlag)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the refused server saw %d requests", n)
	}
	c, err = New(Config{URL: srv.URL + "/certsrv/mscep_admin/", Auth: AuthBasic, Username: testUser, Password: testPassword, AllowPlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Password(context.Background())
	var re *egress.RedirectError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "more than 3 times") {
		t.Fatalf("Password = %v, want a redirect limit", err)
	}
	if n := hits.Load(); n != egress.MaxRedirects+1 {
		t.Errorf("%d requests, want %d", n, egress.MaxRedirects+1)
	}
}
