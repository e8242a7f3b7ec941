package scepclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// marker stands for anything a server's answer says: a secret an SSRF
// would read, a tenant's message to another tenant. It must never appear
// in an error, which reaches profile statuses, request statuses and Events.
const marker = "SECRET-MARKER-7f3a9c"

// caDER is a self-signed CA certificate, a valid GetCACert answer.
func caDER(t *testing.T) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// server is an httptest server that counts what reaches it.
type server struct {
	*httptest.Server
	hits atomic.Int32
}

func startServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func newTestClient(t *testing.T, cfg Config) (*Client, *strings.Builder) {
	t.Helper()
	logs := &strings.Builder{}
	cfg.Logger = funcr.New(func(prefix, args string) { fmt.Fprintln(logs, prefix, args) }, funcr.Options{Verbosity: 1})
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, logs
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// htmlPage is a page carrying the marker, in the places pages put text.
var htmlPage = "<!DOCTYPE html><html><head><title>" + marker + "</title><style>p{}</style></head><body><h1>Error</h1><p>" + marker + " details</p></body></html>"

// TestNoServerTextInErrors: whatever a server answers, errors say what
// kind of answer it was, never what it said; the excerpt is kept for debug
// logs, cleaned.
func TestNoServerTextInErrors(t *testing.T) {
	sshBanner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sshBanner.Close() })
	go func() {
		for {
			conn, err := sshBanner.Accept()
			if err != nil {
				return
			}
			// Like sshd: the banner at once, then the connection stays
			// open (until the client gives up on it). Closing it at once
			// raced with the client still writing its request, which then
			// failed with a reset instead of reading the banner.
			fmt.Fprintf(conn, "SSH-2.0-OpenSSH_9.6 %s\r\n", marker)
			go func() {
				defer conn.Close()
				_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	pkiCaps := scep.NewCapabilities(scep.CapPOSTPKIOperation)
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		url  string // instead of the handler's server
		call func(*Client) error
		says []string
	}{
		{name: "GetCACert HTTP 500 HTML", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, htmlPage)
		}, call: getCACert, says: []string{"HTTP 500 (Internal Server Error) with an HTML page of", `(Content-Type "text/html")`}},
		{name: "GetCACert 200 HTML", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, htmlPage)
		}, call: getCACert, says: []string{"not a SCEP message", "an HTML page of"}},
		{name: "GetCACert 200 plain text", h: func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "root:x:0:0:"+marker+":/root:/bin/bash\n")
		}, call: getCACert, says: []string{"not a SCEP message", "a text answer of"}},
		{name: "GetCACert content type carrying text", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", marker+" words")
			w.WriteHeader(http.StatusBadGateway)
		}, call: getCACert, says: []string{"HTTP 502", "an empty body"}},
		{name: "PKIOperation 503 JSON", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"error":%q}`, marker)
		}, call: func(c *Client) error {
			_, err := c.PKIOperation(context.Background(), pkiCaps, []byte{0x30, 0})
			return err
		}, says: []string{"HTTP 503", "a JSON document of"}},
		{name: "PKIOperation 200 HTML", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-pki-message")
			fmt.Fprint(w, htmlPage)
		}, call: func(c *Client) error {
			_, err := c.PKIOperation(context.Background(), pkiCaps, []byte{0x30, 0})
			return err
		}, says: []string{"not a SCEP message", "does not start like DER"}},
		{name: "not HTTP at all", url: "http://" + sshBanner.Addr().String() + "/scep", call: getCACert, says: []string{"malformed HTTP", "did not answer in HTTP"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.url
			if u == "" {
				u = startServer(t, tc.h).URL + "/scep"
			}
			c, logs := newTestClient(t, Config{URL: u})
			err := tc.call(c)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if strings.Contains(err.Error(), marker) {
				t.Errorf("the error repeats the server's text: %q", err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
			var he *HTTPError
			var ce *ContentError
			excerpt := ""
			switch {
			case errors.As(err, &he):
				excerpt = he.Excerpt
			case errors.As(err, &ce):
				excerpt = ce.Excerpt
			}
			if excerpt != "" && (strings.ContainsAny(excerpt, "<>") || len(excerpt) > 202) {
				t.Errorf("excerpt %s is not cleaned text of at most 200 bytes", excerpt)
			}
			if excerpt != "" && !strings.Contains(logs.String(), marker) {
				t.Errorf("the excerpt is not in the debug log: %s", logs)
			}
		})
	}
}

func getCACert(c *Client) error {
	_, err := c.GetCACert(context.Background())
	return err
}

// TestRecognizedIIS404_15: IIS's page for a query string over its limit is
// read in our words.
func TestRecognizedIIS404_15(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, "<html><title>IIS 10.0 Detailed Error - 404.15 - Not Found</title><body>"+marker+"</body></html>")
	})
	c, _ := newTestClient(t, Config{URL: s.URL + "/scep"})
	_, err := c.PKIOperation(ctx(t), scep.MinimalCapabilities(), []byte{0x30, 0})
	var he *HTTPError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "404.15") || !strings.Contains(err.Error(), "maxQueryString") || strings.Contains(err.Error(), marker) {
		t.Fatalf("err = %v", err)
	}
}

// TestRedirects: a redirect to the same scheme and host is followed, one
// elsewhere is refused before anything reaches the other host, and at most
// 3 are followed.
func TestRedirects(t *testing.T) {
	ca := caDER(t)
	other := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		w.Write(ca)
	})
	otherURL, _ := url.Parse(other.URL)
	self := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/scep?"+r.URL.RawQuery, http.StatusMovedPermanently)
		case "/elsewhere":
			http.Redirect(w, r, other.URL+"/scep?"+r.URL.RawQuery, http.StatusFound)
		case "/https":
			http.Redirect(w, r, "https://"+r.Host+"/scep?"+r.URL.RawQuery, http.StatusFound)
		case "/metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop?"+r.URL.RawQuery, http.StatusFound)
		case "/scep":
			w.Header().Set("Content-Type", "application/x-x509-ca-cert")
			w.Write(ca)
		}
	})
	c, _ := newTestClient(t, Config{URL: self.URL + "/moved"})
	if _, err := c.GetCACert(ctx(t)); err != nil {
		t.Fatalf("same-host redirect: %v", err)
	}
	for _, path := range []string{"/elsewhere", "/https", "/metadata", "/loop"} {
		t.Run(path, func(t *testing.T) {
			before := self.hits.Load()
			c, _ := newTestClient(t, Config{URL: self.URL + path})
			_, err := c.GetCACert(ctx(t))
			var re *egress.RedirectError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a *egress.RedirectError", err)
			}
			if IsTransient(err) {
				t.Errorf("a refused redirect is retried: %v", err)
			}
			if path == "/loop" {
				if n := self.hits.Load() - before; n != egress.MaxRedirects+1 {
					t.Errorf("%d requests in the loop, want %d", n, egress.MaxRedirects+1)
				}
				return
			}
			if !strings.Contains(err.Error(), "only redirects to the same scheme and host") {
				t.Errorf("err = %v", err)
			}
		})
	}
	if n := other.hits.Load(); n != 0 {
		t.Errorf("the other host (%s) saw %d requests", otherURL.Host, n)
	}
}

// TestEgressRefused: an address the policy refuses is never connected to:
// a literal one is refused when the client is built, one a name resolves
// to when it is dialled; nothing reaches the server, and the error names
// the address and the flag, and is not retried.
func TestEgressRefused(t *testing.T) {
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://100.100.100.200/scep", "http://0.0.0.0:8080/scep"} {
		_, err := New(Config{URL: u})
		if err == nil || !egress.IsRefused(err) || !strings.Contains(err.Error(), "always refused") && !strings.Contains(err.Error(), "refused by default") {
			t.Errorf("New(%s) = %v, want a refusal", u, err)
		}
	}
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(caDER(t)) })
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	policy, err := egress.Parse("", "127.0.0.0/8,::1")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newTestClient(t, Config{URL: "http://localhost:" + port + "/scep", Egress: policy})
	_, err = c.GetCACert(ctx(t))
	if !egress.IsRefused(err) || !strings.Contains(err.Error(), egress.DenyFlag) {
		t.Fatalf("GetCACert = %v, want a refusal naming %s", err, egress.DenyFlag)
	}
	if !strings.Contains(err.Error(), "127.0.0.1") && !strings.Contains(err.Error(), "::1") {
		t.Errorf("%q does not name the address", err)
	}
	if IsTransient(err) {
		t.Errorf("a refusal is retried: %v", err)
	}
	if _, err := c.GetCACaps(ctx(t)); !egress.IsRefused(err) {
		t.Errorf("GetCACaps = %v: a refusal is not a server that refused GetCACaps", err)
	}
	if n := s.hits.Load(); n != 0 {
		t.Errorf("the server saw %d requests", n)
	}
	// The control: the default policy allows loopback.
	c, _ = newTestClient(t, Config{URL: "http://localhost:" + port + "/scep"})
	if _, err := c.GetCACert(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestBodyCaps: each operation's answer is capped (GetCACaps 64 KiB,
// GetCACert and PKIOperation 1 MiB), reading stops there, and the error
// says so.
func TestBodyCaps(t *testing.T) {
	var size atomic.Int64
	var sent atomic.Int64
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := bytes.Repeat([]byte{0x30}, 32<<10)
		for n := int64(0); n < size.Load(); n += int64(len(chunk)) {
			m, err := w.Write(chunk)
			sent.Add(int64(m))
			if err != nil {
				return
			}
		}
	})
	postCaps := scep.NewCapabilities(scep.CapPOSTPKIOperation)
	for _, tc := range []struct {
		name  string
		size  int64
		limit int64
		max   int64
		call  func(*Client) error
	}{
		{name: "GetCACaps", size: 8 << 20, limit: MaxCACapsBytes, call: func(c *Client) error { _, err := c.GetCACaps(context.Background()); return err }},
		{name: "GetCACert", size: 8 << 20, limit: MaxCACertBytes, call: getCACert},
		{name: "PKIOperation", size: 8 << 20, limit: MaxPKIOperationBytes, call: func(c *Client) error {
			_, err := c.PKIOperation(context.Background(), postCaps, []byte{0x30, 0})
			return err
		}},
		{name: "lower cap from Config", size: 1 << 20, limit: 4096, max: 4096, call: getCACert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size.Store(tc.size)
			c, _ := newTestClient(t, Config{URL: s.URL + "/scep", MaxResponseBytes: tc.max})
			err := tc.call(c)
			var tl *TooLargeError
			if !errors.As(err, &tl) || tl.Limit != tc.limit || !strings.Contains(err.Error(), fmt.Sprint(tc.limit)) {
				t.Fatalf("err = %v, want a *TooLargeError at %d bytes", err, tc.limit)
			}
			if IsTransient(err) {
				t.Error("an oversized answer is retried")
			}
		})
	}
	// The answers just under the caps pass the cap (and fail as content).
	size.Store(MaxCACapsBytes - 32<<10)
	c, _ := newTestClient(t, Config{URL: s.URL + "/scep"})
	if _, err := c.GetCACaps(ctx(t)); err != nil {
		t.Errorf("GetCACaps of %d bytes: %v", MaxCACapsBytes-32<<10, err)
	}
}

// TestDeepBERGetCACert is finding 7 at the client: a 1 MiB GetCACert of
// nested indefinite-length BER is refused with a clear error (the memory
// bound is tested in package scep).
func TestDeepBERGetCACert(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
		w.Write(bytes.Repeat([]byte{0x30, 0x80}, 1<<19))
	})
	c, _ := newTestClient(t, Config{URL: s.URL + "/scep"})
	_, err := c.GetCACert(ctx(t))
	var ce *ContentError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "nested more than 64 deep") || !strings.Contains(err.Error(), "1048576 bytes of binary data") {
		t.Fatalf("err = %v", err)
	}
	if ce.Excerpt != "" {
		t.Errorf("excerpt %q of a binary body", ce.Excerpt)
	}
}
