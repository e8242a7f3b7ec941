package soak

import (
	"bytes"
	"encoding/base64"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/scep-operator/scep-operator/test/scepserver"
)

// Fault is what a FaultProxy does to the requests it passes.
type Fault int

// The faults: each is what a network or a server in trouble does.
const (
	// Healthy passes every request and answer.
	Healthy Fault = iota
	// Down refuses connections: the server is dead (the listener is
	// closed, so a client sees "connection refused").
	Down
	// Slow holds each answer for the proxy's Latency.
	Slow
	// Reset closes the connection before forwarding: the request never
	// reached the server.
	Reset
	// ServerError answers 503 without forwarding.
	ServerError
	// CutAfterSend forwards the request (the server acts on it: it may
	// issue a certificate) and closes the connection instead of answering:
	// the answer is lost.
	CutAfterSend
)

func (f Fault) String() string {
	return [...]string{"healthy", "down", "slow", "reset", "server-error", "cut-after-send"}[f]
}

// FaultProxy stands in front of a SCEP server on its own loopback port and
// injects one Fault at a time. It counts the PKIOperation requests whose
// answer was lost after the server had them (CutAfterSend), the only ones
// that may legitimately make a server without CertPoll issue twice, and
// keeps every PKIOperation that reached the server (Exchanges), for the
// accounting of servers that keep no transactions.
type FaultProxy struct {
	// URL is the proxied SCEP URL (same path as the server's).
	URL string

	backend *url.URL
	proxy   *httputil.ReverseProxy
	addr    string

	mu          sync.Mutex
	fault       Fault
	latency     time.Duration
	listener    net.Listener
	srv         *http.Server
	lostAnswers int
	exchanges   []Exchange
}

// Exchange is one PKIOperation the proxy passed to the server.
type Exchange struct {
	// At is when the server's answer (or the failure to get one) came back.
	At time.Time
	// Request is the pkiMessage (DER) the client sent.
	Request []byte
	// Status is the server's HTTP status, 0 if it gave no answer (it was
	// killed, or closed the connection).
	Status int
	// Response is the server's answer body.
	Response []byte
	// Delivered says whether the answer reached the client: false under
	// CutAfterSend, when the server gave none, or when the client had
	// gone (it timed out).
	Delivered bool
}

// NewFaultProxy starts a healthy proxy for the SCEP URL target; the proxy
// itself serves plain HTTP. transport (nil: http.DefaultTransport) reaches
// the target, e.g. trusting an https server's root.
func NewFaultProxy(target string, transport http.RoundTripper) (*FaultProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &FaultProxy{backend: u, addr: l.Addr().String(), latency: 3 * time.Second}
	backend := &url.URL{Scheme: u.Scheme, Host: u.Host}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(backend) // and the Host header: the backend's name, for TLS
		},
		Transport: transport,
		// A server down is a fault the soak injects, not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.URL = "http://" + p.addr + u.Path
	if u.RawQuery != "" {
		p.URL += "?" + u.RawQuery
	}
	p.serve(l)
	return p, nil
}

func (p *FaultProxy) serve(l net.Listener) {
	p.listener = l
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(l) }()
}

// Set changes the fault; leaving Down reopens the listener on the same port.
func (p *FaultProxy) Set(f Fault) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f == p.fault {
		return nil
	}
	if f == Down {
		_ = p.srv.Close()
	}
	if p.fault == Down {
		l, err := scepserver.ListenAgain(p.addr)
		if err != nil {
			return err
		}
		p.serve(l)
	}
	p.fault = f
	return nil
}

// LostAnswers is how many PKIOperation answers CutAfterSend withheld after
// the server had acted on the request.
func (p *FaultProxy) LostAnswers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lostAnswers
}

// Exchanges returns every PKIOperation passed to the server so far.
func (p *FaultProxy) Exchanges() []Exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Exchange(nil), p.exchanges...)
}

// Close stops the proxy.
func (p *FaultProxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.srv.Close()
}

// ServeHTTP applies the current fault.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	fault, latency := p.fault, p.latency
	p.mu.Unlock()
	pki := strings.Contains(r.URL.RawQuery, "PKIOperation")
	switch fault {
	case Reset:
		hijackClose(w)
		return
	case ServerError:
		http.Error(w, "injected fault: service unavailable", http.StatusServiceUnavailable)
		return
	case Slow:
		t := time.NewTimer(latency)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	if !pki {
		p.proxy.ServeHTTP(w, r)
		return
	}
	// A message the proxy cannot read is passed on all the same (and
	// recorded empty): the server is the judge of what it was sent.
	msg, _ := pkiMessageOf(r)
	rec := &recorder{header: http.Header{}}
	p.proxy.ServeHTTP(rec, r)
	x := Exchange{Request: msg, Response: rec.body.Bytes()}
	if rec.code != http.StatusBadGateway || rec.header.Get("Content-Type") != "" {
		// ReverseProxy answers a bare 502 when the server gave nothing.
		x.Status = rec.code
	}
	if fault == CutAfterSend {
		if x.Status == http.StatusOK {
			p.mu.Lock()
			p.lostAnswers++
			p.mu.Unlock()
		}
		hijackClose(w)
	} else {
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.code)
		_, err := w.Write(rec.body.Bytes())
		x.Delivered = err == nil && x.Status != 0 && r.Context().Err() == nil
	}
	x.At = time.Now()
	p.mu.Lock()
	p.exchanges = append(p.exchanges, x)
	p.mu.Unlock()
}

// pkiMessageOf reads the pkiMessage of a PKIOperation (the POST body, which
// it puts back for the server, or GET's base64 message parameter).
func pkiMessageOf(r *http.Request) ([]byte, error) {
	if r.Method != http.MethodPost {
		return base64.StdEncoding.DecodeString(r.URL.Query().Get("message"))
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

// hijackClose closes the client's connection without an answer.
func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// recorder keeps an answer the client will never get.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}
