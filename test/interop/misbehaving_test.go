package interop

import (
	"context"
	"crypto"
	"encoding/asn1"
	"errors"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

var (
	oidDES3CBC   = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	oidAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidSHA1      = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA512    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// misbehaving starts the test server with b and discovers it.
func misbehaving(t *testing.T, b scepserver.Behavior, cfg scepclient.Config) (*scepserver.Server, *scepclient.Client, *scepclient.ServerInfo) {
	t.Helper()
	srv := scepserver.Start(t, b)
	cfg.URL = srv.URL
	c := newClient(t, cfg)
	info, err := c.Discover(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, info
}

func simple(cn string) enrollment {
	return enrollment{tmpl: scep.CSRTemplate{Subject: name(cn), DNSNames: []string{cn + ".example"}}, key: rsaKey(nil, 2048, 0)}
}

func TestPendingThenCertPoll(t *testing.T) {
	srv, c, info := misbehaving(t, scepserver.Behavior{Pending: 3}, scepclient.Config{})
	e := simple("pending")
	rep, msg, csr, err := enroll(t, c, info, e)
	if err != nil || rep.Status != scep.StatusPending {
		t.Fatalf("PKCSReq: %v, %v", rep, err)
	}
	signer := msg.Signer
	var polls int
	for rep.Status == scep.StatusPending {
		polls++
		if polls > 5 {
			t.Fatal("still pending after 5 polls")
		}
		if rep, err = c.CertPoll(ctxT(t), info, signer, msg.TransactionID, csr.RawSubject); err != nil {
			t.Fatalf("CertPoll %d: %v", polls, err)
		}
	}
	checkIssued(t, rep, nil, csr, srv.CA)
	if polls != 3 || srv.PKIMessages("PKCSReq") != 1 || srv.PKIMessages("CertPoll") != 3 {
		t.Errorf("polls %d, server saw %d PKCSReq and %d CertPoll", polls, srv.PKIMessages("PKCSReq"), srv.PKIMessages("CertPoll"))
	}
	for _, r := range srv.PKIRequests() {
		if r.TransactionID != string(msg.TransactionID) {
			t.Errorf("%s carried transaction %q, want %q", r.MessageType, r.TransactionID, msg.TransactionID)
		}
	}
}

func TestPendingThenRejected(t *testing.T) {
	_, c, info := misbehaving(t, scepserver.Behavior{Pending: 1, Reject: true, FailInfoText: "denied by a CA manager"}, scepclient.Config{})
	rep, msg, csr, err := enroll(t, c, info, simple("rejected"))
	if err != nil || rep.Status != scep.StatusPending {
		t.Fatalf("PKCSReq: %v", err)
	}
	_, err = c.CertPoll(ctxT(t), info, msg.Signer, msg.TransactionID, csr.RawSubject)
	var fe *scep.FailureError
	if !errors.As(err, &fe) || fe.FailInfo != scep.BadRequest || fe.Text != "denied by a CA manager" {
		t.Fatalf("err = %v", err)
	}
}

func TestFailInfo(t *testing.T) {
	for _, fi := range []scep.FailInfo{scep.BadAlg, scep.BadMessageCheck, scep.BadRequest, scep.BadTime, scep.BadCertID} {
		t.Run(fi.String(), func(t *testing.T) {
			code := int(fi[0] - '0')
			_, c, info := misbehaving(t, scepserver.Behavior{FailInfo: &code, FailInfoText: "server says " + fi.String()}, scepclient.Config{})
			rep, _, _, err := enroll(t, c, info, simple("fail"))
			var fe *scep.FailureError
			if !errors.As(err, &fe) || fe.FailInfo != fi || rep.Status != scep.StatusFailure {
				t.Fatalf("err = %v, want FAILURE %v", err, fi)
			}
			if !strings.Contains(err.Error(), fi.String()) || !strings.Contains(err.Error(), "server says") || scepclient.IsTransient(err) {
				t.Errorf("error %q should name %v, carry the server's text and be permanent", err, fi)
			}
		})
	}
}

// TestNDESLikeRASplit: CA + RA signing + RA encryption certificates, served
// with the wrong content type; the request must be encrypted to the RA
// encryption certificate and the RA-signed reply accepted.
func TestNDESLikeRASplit(t *testing.T) {
	srv, c, info := misbehaving(t, scepserver.Behavior{RASplit: true, WrongContentType: true, ChainInReply: true, DecryptFailureStatus: 500}, scepclient.Config{})
	_, enc, err := srv.RACerts()
	if err != nil {
		t.Fatal(err)
	}
	if !info.Recipient.Equal(enc) || !info.Issuer.Equal(srv.CA) {
		t.Fatalf("recipient %v, issuer %v", info.Recipient.Subject, info.Issuer.Subject)
	}
	pin := scep.FingerprintOf(srv.CA, crypto.SHA1)
	if info, err = c.Discover(ctxT(t), &pin); err != nil || len(info.CACerts.Certs) != 3 {
		t.Fatalf("pin on the CA: %v", err)
	}
	u := scep.CSRTemplate{Subject: name("ndes"), UPNs: []string{"svc@corp.example"}, DNSNames: []string{"ndes.example"}}
	rep, _, csr, err := enroll(t, c, info, enrollment{tmpl: u, key: rsaKey(t, 2048, 1)})
	leaf := checkIssued(t, rep, err, csr, srv.CA)
	if upns, _ := scep.UPNs(leaf.Extensions); !reflect.DeepEqual(upns, u.UPNs) {
		t.Errorf("UPN in the issued certificate = %v", upns)
	}
	if last, _ := srv.LastPKIRequest(); len(last.Recipients) != 1 || !last.Recipients[0].Equal(enc) {
		t.Errorf("request was not encrypted to the RA encryption certificate")
	}

	// Encrypting to the CA instead fails the way NDES does.
	wrong := *info
	wrong.Recipient = srv.CA
	_, _, _, err = enroll(t, c, &wrong, simple("wrong-recipient"))
	var he *scepclient.HTTPError
	// The error describes the answer; the server's words stay in the
	// debug excerpt (never in a status or an Event).
	if !errors.As(err, &he) || he.StatusCode != 500 || !strings.Contains(he.Excerpt, "0x80090005") || strings.Contains(err.Error(), "0x80090005") {
		t.Errorf("err = %v (excerpt %q), want HTTP 500 with NDES's decrypt error in the excerpt only", err, func() string {
			if he != nil {
				return he.Excerpt
			}
			return ""
		}())
	}
}

// TestOldNDES: no GetCACaps, so the minimal set: GET, triple DES, SHA-1.
func TestOldNDES(t *testing.T) {
	srv, c, info := misbehaving(t, scepserver.Behavior{NoCaps: true, GetOnly: true}, scepclient.Config{MaxGETQueryBytes: 16 << 10})
	if info.Caps.POST() || info.Algorithms != (scep.Algorithms{Cipher: scep.CipherDES3CBC, Digest: crypto.SHA1}) {
		t.Fatalf("caps %v, algorithms %v", info.Caps.Strings(), info.Algorithms)
	}
	rep, _, csr, err := enroll(t, c, info, simple("old-ndes"))
	checkIssued(t, rep, err, csr, srv.CA)
	last, _ := srv.LastPKIRequest()
	if last.Method != http.MethodGet || !last.ContentEncryption.Equal(oidDES3CBC) || !last.Digest.Equal(oidSHA1) {
		t.Errorf("sent %s with cipher %v digest %v", last.Method, last.ContentEncryption, last.Digest)
	}
}

func TestModernAlgorithms(t *testing.T) {
	srv, c, info := misbehaving(t, scepserver.Behavior{Caps: []string{"POSTPKIOperation", "AES", "SHA-512", "SHA-256"}}, scepclient.Config{})
	rep, _, csr, err := enroll(t, c, info, simple("modern"))
	checkIssued(t, rep, err, csr, srv.CA)
	last, _ := srv.LastPKIRequest()
	if last.Method != http.MethodPost || !last.ContentEncryption.Equal(oidAES256CBC) || !last.Digest.Equal(oidSHA512) {
		t.Errorf("sent %s with cipher %v digest %v", last.Method, last.ContentEncryption, last.Digest)
	}
}

// TestGETQueryLimit: behind IIS's default 2048-byte query limit, a client
// with the default limit (65534, what NDES deployments set) sends and gets
// IIS's 404.15, explained; a client told 2048 refuses before sending.
func TestGETQueryLimit(t *testing.T) {
	srv, c, info := misbehaving(t, scepserver.Behavior{GetOnly: true, MaxQueryBytes: 2048}, scepclient.Config{})
	_, _, _, err := enroll(t, c, info, simple("long"))
	var he *scepclient.HTTPError
	if !errors.As(err, &he) || he.StatusCode != 404 || !strings.Contains(he.Excerpt, "404.15") ||
		!strings.Contains(err.Error(), "maxQueryString") || !strings.Contains(err.Error(), "POSTPKIOperation") {
		t.Fatalf("err = %v, want IIS's 404.15 explained", err)
	}
	if srv.Requests(scepserver.OpPKIOperation) != 1 || srv.PKIMessages("PKCSReq") != 0 {
		t.Errorf("PKIOperations seen %d, PKCSReqs read %d; want 1 stopped by IIS, 0", srv.Requests(scepserver.OpPKIOperation), srv.PKIMessages("PKCSReq"))
	}
	c2 := newClient(t, scepclient.Config{URL: srv.URL, MaxGETQueryBytes: 2048})
	_, _, _, err = enroll(t, c2, info, simple("long"))
	if !errors.Is(err, scepclient.ErrQueryTooLong) || srv.Requests(scepserver.OpPKIOperation) != 1 {
		t.Fatalf("err = %v, PKIOperations seen %d", err, srv.Requests(scepserver.OpPKIOperation))
	}
}

// TestBrokenReplies: each protocol violation is refused with its reason,
// never accepted, never a panic.
func TestBrokenReplies(t *testing.T) {
	cases := []struct {
		name   string
		b      func(*scepserver.Behavior)
		reason string // ReplyError reason; "" means a ContentError
	}{
		{"wrong recipientNonce", func(b *scepserver.Behavior) { b.WrongRecipientNonce = true }, "RecipientNonceMismatch"},
		{"wrong transactionID", func(b *scepserver.Behavior) { b.WrongTransactionID = true }, "TransactionIDMismatch"},
		{"wrong messageType", func(b *scepserver.Behavior) { b.WrongMessageType = true }, "WrongMessageType"},
		{"unsigned", func(b *scepserver.Behavior) { b.Unsigned = true }, "Malformed"},
		{"bad signature", func(b *scepserver.Behavior) { b.BadSignature = true }, "BadSignature"},
		{"truncated DER", func(b *scepserver.Behavior) {
			b.TruncatedDER = true
			b.FaultOperations = []string{scepserver.OpPKIOperation}
		}, "Malformed"},
		{"HTML with 200", func(b *scepserver.Behavior) {
			b.HTMLStatus200 = true
			b.FaultOperations = []string{scepserver.OpPKIOperation}
		}, ""},
	}
	srv, c, info := misbehaving(t, scepserver.Behavior{}, scepclient.Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv.Set(func(b *scepserver.Behavior) { *b = scepserver.Behavior{}; tc.b(b) })
			rep, _, _, err := enroll(t, c, info, simple("broken"))
			if err == nil {
				t.Fatalf("accepted: %v", rep.Status)
			}
			var re *scep.ReplyError
			var ce *scepclient.ContentError
			switch {
			case tc.reason == "" && errors.As(err, &ce):
			case tc.reason != "" && errors.As(err, &re) && re.Reason == tc.reason:
			default:
				t.Fatalf("err = %v (%T), want reason %q", err, err, tc.reason)
			}
			if !scepclient.IsTransient(err) {
				t.Errorf("a broken reply should be retried: %v", err)
			}
		})
	}
	t.Run("garbage", func(t *testing.T) {
		srv.Set(func(b *scepserver.Behavior) {
			*b = scepserver.Behavior{Garbage: true, FaultOperations: []string{scepserver.OpPKIOperation}}
		})
		if _, _, _, err := enroll(t, c, info, simple("garbage")); err == nil || !scepclient.IsTransient(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("HTML excerpt", func(t *testing.T) {
		srv.Set(func(b *scepserver.Behavior) { *b = scepserver.Behavior{HTMLStatus200: true} })
		_, err := c.GetCACert(ctxT(t))
		var ce *scepclient.ContentError
		if !errors.As(err, &ce) || ce.Excerpt == "" || strings.Contains(ce.Excerpt, "<") {
			t.Fatalf("err = %v, want a ContentError with a text excerpt", err)
		}
	})
}

func TestHTTPFaults(t *testing.T) {
	srv, _, info := misbehaving(t, scepserver.Behavior{}, scepclient.Config{})
	t.Run("503 with Retry-After", func(t *testing.T) {
		srv.Set(func(b *scepserver.Behavior) { *b = scepserver.Behavior{Status: 503, RetryAfter: "120"} })
		c := newClient(t, scepclient.Config{URL: srv.URL})
		_, _, _, err := enroll(t, c, info, simple("busy"))
		var he *scepclient.HTTPError
		if !errors.As(err, &he) || he.StatusCode != 503 || he.RetryAfter != 120*time.Second || !scepclient.IsTransient(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("slow server times out", func(t *testing.T) {
		srv.Set(func(b *scepserver.Behavior) { *b = scepserver.Behavior{Delay: 5 * time.Second} })
		c := newClient(t, scepclient.Config{URL: srv.URL, Timeout: 200 * time.Millisecond})
		// The server answers after 5s: an error proves the client gave up
		// first, whatever the machine's speed.
		_, err := c.GetCACert(ctxT(t))
		var ne net.Error
		if err == nil || !scepclient.IsTransient(err) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err = %v, want a transient timeout", err)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		srv.Set(func(b *scepserver.Behavior) { *b = scepserver.Behavior{Delay: 5 * time.Second} })
		c := newClient(t, scepclient.Config{URL: srv.URL})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(100 * time.Millisecond); cancel() }()
		_, err := c.GetCACert(ctx)
		if !errors.Is(err, context.Canceled) || scepclient.IsTransient(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		c := newClient(t, scepclient.Config{URL: "http://127.0.0.1:1/scep"})
		_, err := c.GetCACert(ctxT(t))
		if err == nil || !scepclient.IsTransient(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("response over 1 MiB", func(t *testing.T) {
		big := httptestServer(t, strings.Repeat("A", 2<<20))
		_, err := newClient(t, scepclient.Config{URL: big}).GetCACert(ctxT(t))
		if err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestGetCertAndGetCRL(t *testing.T) {
	srv, c, info := misbehaving(t, scepserver.Behavior{}, scepclient.Config{})
	rep, msg, csr, err := enroll(t, c, info, simple("getcert"))
	leaf := checkIssued(t, rep, err, csr, srv.CA)

	gc, err := scep.NewGetCert(leaf.RawIssuer, leaf.SerialNumber, info.MessageOptions(msg.Signer, ""))
	if err != nil {
		t.Fatal(err)
	}
	rep, err = c.Send(ctxT(t), info, gc)
	if err != nil || !rep.Certificates[0].Equal(leaf) {
		t.Fatalf("GetCert: %v", err)
	}

	srv.Revoke(leaf.SerialNumber)
	crlMsg, err := scep.NewGetCRL(leaf.RawIssuer, leaf.SerialNumber, info.MessageOptions(msg.Signer, ""))
	if err != nil {
		t.Fatal(err)
	}
	rep, err = c.Send(ctxT(t), info, crlMsg)
	if err != nil || rep.CRL == nil {
		t.Fatalf("GetCRL: %v", err)
	}
	if err := rep.CRL.CheckSignatureFrom(srv.CA); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	found := false
	for _, e := range rep.CRL.RevokedCertificateEntries {
		found = found || e.SerialNumber.Cmp(leaf.SerialNumber) == 0
	}
	if !found {
		t.Errorf("revoked serial not on the CRL")
	}
}
