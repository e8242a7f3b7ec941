package interop

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

var (
	keyMu   sync.Mutex
	keyPool = map[int][]*rsa.PrivateKey{}
)

// rsaKey returns the i-th RSA key of the given size, generated once per
// test binary (4096-bit generation takes seconds).
func rsaKey(t testing.TB, bits, i int) *rsa.PrivateKey {
	keyMu.Lock()
	defer keyMu.Unlock()
	for len(keyPool[bits]) <= i {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err) // crypto/rand does not fail
		}
		keyPool[bits] = append(keyPool[bits], k)
	}
	return keyPool[bits][i]
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t testing.TB, cfg scepclient.Config) *scepclient.Client {
	t.Helper()
	c, err := scepclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrollment is one PKCSReq's inputs.
type enrollment struct {
	tmpl   scep.CSRTemplate
	key    *rsa.PrivateKey
	signer *scep.Signer // nil: self-signed with key (RFC 8894)
	renew  bool
}

// enroll sends one PKCSReq (or RenewalReq) and returns the reply, the
// message and the CSR.
func enroll(t testing.TB, c *scepclient.Client, info *scepclient.ServerInfo, e enrollment) (*scep.CertRep, *scep.Message, *x509.CertificateRequest, error) {
	t.Helper()
	msg, csr := request(t, info, e)
	rep, err := c.Send(ctxT(t), info, msg)
	return rep, msg, csr, err
}

// request builds e's PKCSReq (or RenewalReq) and returns it with its CSR.
func request(t testing.TB, info *scepclient.ServerInfo, e enrollment) (*scep.Message, *x509.CertificateRequest) {
	t.Helper()
	der, err := scep.NewCSR(e.tmpl, e.key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	signer := e.signer
	if signer == nil {
		if signer, err = scep.NewSelfSignedSigner(e.key, csr.RawSubject, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	var msg *scep.Message
	if e.renew {
		msg, err = scep.NewRenewalReq(der, info.MessageOptions(signer, ""))
	} else {
		msg, err = scep.NewPKCSReq(der, info.MessageOptions(signer, ""))
	}
	if err != nil {
		t.Fatal(err)
	}
	return msg, csr
}

// checkIssued asserts a SUCCESS whose leaf holds the CSR's key and chains
// to root.
func checkIssued(t testing.TB, rep *scep.CertRep, err error, csr *x509.CertificateRequest, roots ...*x509.Certificate) *x509.Certificate {
	t.Helper()
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if rep.Status != scep.StatusSuccess || len(rep.Certificates) == 0 {
		t.Fatalf("status %v with %d certificates", rep.Status, len(rep.Certificates))
	}
	leaf := rep.Certificates[0]
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
		t.Fatalf("issued certificate does not hold the CSR's key")
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range rep.Certificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("issued certificate does not chain to the CA: %v", err)
	}
	return leaf
}

func name(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{"scep-operator tests"}}
}

func itoa(i int) string { return strconv.Itoa(i) }

// recorder is an http.RoundTripper that notes each request's method and
// SCEP operation before passing it on.
type recorder struct {
	base http.RoundTripper // nil: http.DefaultTransport
	mu   sync.Mutex
	seen []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.seen = append(r.seen, req.Method+" "+req.URL.Query().Get("operation"))
	r.mu.Unlock()
	if r.base != nil {
		return r.base.RoundTrip(req)
	}
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) methods() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// httptestServer serves body for every request.
func httptestServer(t testing.TB, body string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) }))
	t.Cleanup(s.Close)
	return s.URL
}
