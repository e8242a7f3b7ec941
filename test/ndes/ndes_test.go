package ndes_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/Azure/go-ntlmssp"
	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"

	"github.com/scep-operator/scep-operator/test/ndes"
)

var passwordRE = regexp.MustCompile(`The enrollment challenge password is: <B> ([0-9A-F]{16}) </B>`)

// ntlmClient is how go-ntlmssp is meant to be used: credentials as Basic
// auth on the request, the Negotiator turns them into an NTLM handshake.
func ntlmClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: ntlmssp.Negotiator{RoundTripper: tr}}
}

func fetch(t *testing.T, c *http.Client, u, user, pass string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// decode reads an admin page: BOM if any, else guess UTF-16 from NULs.
func decode(b []byte) string {
	var order binary.ByteOrder
	switch {
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE}):
		order, b = binary.LittleEndian, b[2:]
	case bytes.HasPrefix(b, []byte{0xFE, 0xFF}):
		order, b = binary.BigEndian, b[2:]
	case len(b) >= 2 && b[1] == 0:
		order = binary.LittleEndian
	case len(b) >= 2 && b[0] == 0:
		order = binary.BigEndian
	default:
		return string(b)
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = order.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// password fetches a one-time password over NTLM with the default account.
func password(t *testing.T, s *ndes.Server) string {
	t.Helper()
	resp, body := fetch(t, ntlmClient(t), s.AdminURL, ndes.DefaultDomain+`\`+ndes.DefaultUsername, ndes.DefaultPassword)
	m := passwordRE.FindStringSubmatch(decode(body))
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("admin page: HTTP %d, no password in %q", resp.StatusCode, decode(body))
	}
	return m[1]
}

func TestAdminPageNTLM(t *testing.T) {
	s := ndes.Start(t, ndes.Options{})
	for _, user := range []string{`CORP\svc-scep`, `corp\SVC-SCEP`, "svc-scep@corp.example.test", "svc-scep"} {
		t.Run(user, func(t *testing.T) {
			resp, body := fetch(t, ntlmClient(t), s.AdminURL, user, ndes.DefaultPassword)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("HTTP %d, want 200 (%s)", resp.StatusCode, s.Counters().LastAuthFailure)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html" {
				t.Errorf("Content-Type = %q, want text/html without charset", ct)
			}
			if body[1] != 0 || bytes.HasPrefix(body, []byte{0xFF, 0xFE}) {
				t.Errorf("page is not UTF-16LE without BOM: % x", body[:8])
			}
			page := decode(body)
			thumb := strings.Index(page, "The thumbprint (hash value) for the CA certificate is: <B> "+s.Thumbprint+" </B>")
			pw := passwordRE.FindStringSubmatchIndex(page)
			if thumb < 0 || pw == nil || thumb > pw[0] {
				t.Fatalf("want the thumbprint, then the password:\n%s", page)
			}
			for _, want := range []string{"<Title>Network Device Enrollment Service</Title>", "This password can be used only once and will expire within 60 minutes."} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			if c := s.Counters(); c.LastAuthUser != `CORP\svc-scep` || c.LastAuthScheme != "NTLM" {
				t.Errorf("last auth = %q over %q, want CORP\\svc-scep over NTLM", c.LastAuthUser, c.LastAuthScheme)
			}
		})
	}

	t.Run("thumbprint is MD5 in groups of 8", func(t *testing.T) {
		if !regexp.MustCompile(`^[0-9a-f]{8}( [0-9a-f]{8}){3}$`).MatchString(s.Thumbprint) {
			t.Errorf("Thumbprint = %q", s.Thumbprint)
		}
		sha := ndes.Start(t, ndes.Options{ThumbprintHash: crypto.SHA1})
		sum := fmt.Sprintf("%x", sha1.Sum(sha.CA.Raw))
		if strings.ReplaceAll(sha.Thumbprint, " ", "") != sum {
			t.Errorf("SHA-1 Thumbprint = %q, want %s", sha.Thumbprint, sum)
		}
	})

	t.Run("connection stays authenticated", func(t *testing.T) {
		c := ntlmClient(t)
		fetch(t, c, s.AdminURL, `CORP\svc-scep`, ndes.DefaultPassword)
		before := s.Counters().AuthChallenges
		resp, _ := fetch(t, c, s.AdminURL, `CORP\svc-scep`, ndes.DefaultPassword)
		after := s.Counters()
		if resp.StatusCode != http.StatusOK || after.AuthChallenges != before || after.LastAuthScheme != "NTLM (connection)" {
			t.Errorf("second request: HTTP %d, %d new challenges, scheme %q; want 200 on the authenticated connection", resp.StatusCode, after.AuthChallenges-before, after.LastAuthScheme)
		}
	})

	for _, tc := range []struct{ name, user, pass, why string }{
		{"wrong password", `CORP\svc-scep`, "wrong", "NTProofStr mismatch"},
		{"unknown user", `CORP\mallory`, ndes.DefaultPassword, "unknown user"},
		{"unknown domain", `OTHER\svc-scep`, ndes.DefaultPassword, "unknown domain"},
		{"no credentials", "", "", "no Authorization header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := fetch(t, ntlmClient(t), s.AdminURL, tc.user, tc.pass)
			if resp.StatusCode != http.StatusUnauthorized || !contains(resp.Header.Values("WWW-Authenticate"), "NTLM") {
				t.Errorf("HTTP %d, WWW-Authenticate %q; want 401 offering NTLM", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
			}
			if why := s.Counters().LastAuthFailure; !strings.Contains(why, tc.why) {
				t.Errorf("LastAuthFailure = %q, want it to say %q", why, tc.why)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestNTLMHandshakeIsPerConnection sends NEGOTIATE and AUTHENTICATE on two
// different connections: NTLM authenticates a connection, so it fails.
func TestNTLMHandshakeIsPerConnection(t *testing.T) {
	s := ndes.Start(t, ndes.Options{OfferNegotiate: true})
	for _, tc := range []struct {
		name     string
		scheme   string
		sameConn bool
		want     int
	}{
		{"same connection", "NTLM", true, http.StatusOK},
		{"Negotiate with raw NTLM", "Negotiate", true, http.StatusOK},
		{"two connections", "NTLM", false, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := &http.Transport{}
			second := first
			if !tc.sameConn {
				second = &http.Transport{}
			}
			defer first.CloseIdleConnections()
			defer second.CloseIdleConnections()
			neg, err := ntlmssp.NewNegotiateMessage("", "")
			if err != nil {
				t.Fatal(err)
			}
			resp := roundTrip(t, first, s.AdminURL, tc.scheme+" "+base64.StdEncoding.EncodeToString(neg))
			offered := resp.Header.Values("WWW-Authenticate")
			if resp.StatusCode != http.StatusUnauthorized || len(offered) != 1 || !strings.HasPrefix(offered[0], tc.scheme+" ") {
				t.Fatalf("NEGOTIATE: HTTP %d, WWW-Authenticate %q", resp.StatusCode, offered)
			}
			challenge, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(offered[0], tc.scheme+" "))
			if err != nil {
				t.Fatal(err)
			}
			auth, err := ntlmssp.NewAuthenticateMessage(challenge, `CORP\svc-scep`, ndes.DefaultPassword, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp = roundTrip(t, second, s.AdminURL, tc.scheme+" "+base64.StdEncoding.EncodeToString(auth))
			if resp.StatusCode != tc.want {
				t.Errorf("AUTHENTICATE: HTTP %d, want %d (%s)", resp.StatusCode, tc.want, s.Counters().LastAuthFailure)
			}
		})
	}
	resp := roundTrip(t, &http.Transport{}, s.AdminURL, "")
	if got := resp.Header.Values("WWW-Authenticate"); len(got) != 2 || got[0] != "Negotiate" || got[1] != "NTLM" {
		t.Errorf("WWW-Authenticate = %q, want Negotiate then NTLM", got)
	}
}

func roundTrip(t *testing.T, tr http.RoundTripper, u, authorization string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestAdminPageBasic(t *testing.T) {
	s := ndes.Start(t, ndes.Options{Auth: ndes.AuthBasic, Realm: "ndes.corp.example"})
	resp, body := fetch(t, http.DefaultClient, s.AdminURL, "svc-scep@CORP.example.test", ndes.DefaultPassword)
	if resp.StatusCode != http.StatusOK || passwordRE.FindString(decode(body)) == "" {
		t.Fatalf("Basic: HTTP %d, page %q", resp.StatusCode, decode(body))
	}
	if c := s.Counters(); c.LastAuthScheme != "Basic" {
		t.Errorf("LastAuthScheme = %q", c.LastAuthScheme)
	}
	resp, _ = fetch(t, http.DefaultClient, s.AdminURL, `CORP\svc-scep`, "wrong")
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="ndes.corp.example"` {
		t.Errorf("wrong password: HTTP %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	// go-ntlmssp does not send Basic credentials unless allowed to.
	resp, _ = fetch(t, ntlmClient(t), s.AdminURL, `CORP\svc-scep`, ndes.DefaultPassword)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("NTLM client against Basic: HTTP %d, want 401", resp.StatusCode)
	}

	both := ndes.Start(t, ndes.Options{Auth: ndes.AuthBoth})
	for name, c := range map[string]*http.Client{"Basic": http.DefaultClient, "NTLM": ntlmClient(t)} {
		resp, _ := fetch(t, c, both.AdminURL, `CORP\svc-scep`, ndes.DefaultPassword)
		if resp.StatusCode != http.StatusOK || both.Counters().LastAuthScheme != name {
			t.Errorf("AuthBoth with %s: HTTP %d, scheme %q", name, resp.StatusCode, both.Counters().LastAuthScheme)
		}
	}
}

func TestPageEncodings(t *testing.T) {
	for _, enc := range []ndes.Encoding{ndes.UTF16LE, ndes.UTF16LEBOM, ndes.UTF16BE, ndes.UTF16BEBOM, ndes.UTF8} {
		s := ndes.Start(t, ndes.Options{PageEncoding: enc, Auth: ndes.AuthNone})
		_, body := fetch(t, http.DefaultClient, s.AdminURL, "", "")
		if !bytes.Equal(body, ndes.Encode(decode(body), enc)) || passwordRE.FindString(decode(body)) == "" {
			t.Errorf("encoding %d: page does not round-trip or has no password: % x", enc, body[:8])
		}
	}
}

func TestPasswordCacheAndExpiry(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := ndes.Start(t, ndes.Options{Now: clock})
	c := ntlmClient(t)
	get := func() string {
		resp, body := fetch(t, c, s.AdminURL, `CORP\svc-scep`, ndes.DefaultPassword)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
		return decode(body)
	}
	seen := map[string]bool{}
	for i := range 5 {
		m := passwordRE.FindStringSubmatch(get())
		if m == nil || seen[m[1]] {
			t.Fatalf("fetch %d: no fresh password", i+1)
		}
		seen[m[1]] = true
	}
	if page := get(); !strings.Contains(page, ndes.CacheFullText) || passwordRE.MatchString(page) {
		t.Fatalf("sixth fetch: want the cache-full page, got %q", page)
	}
	if s.IssuePassword() != "" {
		t.Error("IssuePassword with a full cache returned a password")
	}
	mu.Lock()
	now = now.Add(61 * time.Minute)
	mu.Unlock()
	if s.UnusedPasswords() != 0 || !passwordRE.MatchString(get()) {
		t.Error("passwords did not expire after 60 minutes")
	}
	if c := s.Counters(); c.PasswordsIssued != 6 || c.CacheFullPages != 1 || c.PasswordPages != 6 {
		t.Errorf("counters = %+v", c)
	}
}

func TestPermission(t *testing.T) {
	s := ndes.Start(t, ndes.Options{Users: map[string]string{"bob": "bobs-pw"}, AllowedUsers: []string{`corp\svc-scep`}})
	resp, body := fetch(t, ntlmClient(t), s.AdminURL, `CORP\bob`, "bobs-pw")
	if page := decode(body); resp.StatusCode != http.StatusOK || !strings.Contains(page, ndes.NoPermissionText) || passwordRE.MatchString(page) {
		t.Errorf("bob: HTTP %d, %q", resp.StatusCode, page)
	}
	password(t, s)
	if c := s.Counters(); c.PermissionPages != 1 || c.PasswordPages != 1 {
		t.Errorf("counters = %+v", c)
	}
}

func TestOneTimePasswordEnrolment(t *testing.T) {
	s := ndes.Start(t, ndes.Options{})
	pw := password(t, s)

	c := newSCEPClient(t, s, pw)
	if len(c.certs) != 3 || !c.certs[0].Equal(s.RASign) || !c.certs[1].Equal(s.RAEncrypt) || !c.certs[2].Equal(s.CA) {
		t.Fatalf("GetCACert returned %d certificates, want RA signing, RA encryption, CA in that order (NDES's)", len(c.certs))
	}
	rep, _ := c.send(t, c.pkcsReq(t).Raw)
	if rep.PKIStatus != scep.SUCCESS {
		t.Fatalf("first use: pkiStatus %q", rep.PKIStatus)
	}
	c.checkIssued(t, rep)

	again := newSCEPClient(t, s, pw)
	rep, raw := again.send(t, again.pkcsReq(t).Raw)
	if rep.PKIStatus != scep.FAILURE || rep.FailInfo != scep.BadRequest || failInfoText(t, raw) != "" || msError(t, raw) != ndes.ErrInvalidPassword {
		t.Errorf("reuse: %q/%q failInfoText %q, error code %d; want FAILURE/badRequest, no text, %d", rep.PKIStatus, rep.FailInfo, failInfoText(t, raw), msError(t, raw), ndes.ErrInvalidPassword)
	}
	wrong := newSCEPClient(t, s, "0123456789ABCDEF")
	if rep, _ := wrong.send(t, wrong.pkcsReq(t).Raw); rep.PKIStatus != scep.FAILURE {
		t.Errorf("unknown password: %q", rep.PKIStatus)
	}
	none := newSCEPClient(t, s, "")
	if rep, _ := none.send(t, none.pkcsReq(t).Raw); rep.PKIStatus != scep.FAILURE {
		t.Errorf("no password: %q", rep.PKIStatus)
	}
	if got := s.Counters(); got.PasswordsConsumed != 1 || got.PasswordsRefused != 3 || got.PKCSReq != 4 {
		t.Errorf("counters = %+v", got)
	}

	t.Run("envelope to the CA is a 500", func(t *testing.T) {
		c := newSCEPClient(t, s, s.IssuePassword())
		c.selector = scep.CertsSelectorFunc(func([]*x509.Certificate) []*x509.Certificate { return []*x509.Certificate{s.CA} })
		_, status, body := c.post(t, c.pkcsReq(t).Raw)
		if status != http.StatusInternalServerError || !strings.Contains(string(body), "0x80090005") {
			t.Errorf("HTTP %d %q", status, body)
		}
	})
	t.Run("NoEnforcePassword", func(t *testing.T) {
		s.Set(func(o *ndes.Options) { o.NoEnforcePassword = true })
		c := newSCEPClient(t, s, "")
		if rep, _ := c.send(t, c.pkcsReq(t).Raw); rep.PKIStatus != scep.SUCCESS {
			t.Errorf("pkiStatus %q", rep.PKIStatus)
		}
	})
	t.Run("SinglePassword", func(t *testing.T) {
		const single = "5EC12E75EC12E7AB"
		s.Set(func(o *ndes.Options) { o.NoEnforcePassword, o.SinglePassword = false, single })
		for range 2 {
			pw := password(t, s)
			if pw != single {
				t.Fatalf("page shows %q, want the single password", pw)
			}
			c := newSCEPClient(t, s, pw)
			if rep, _ := c.send(t, c.pkcsReq(t).Raw); rep.PKIStatus != scep.SUCCESS {
				t.Errorf("pkiStatus %q", rep.PKIStatus)
			}
		}
	})
}

func TestManualApproval(t *testing.T) {
	s := ndes.Start(t, ndes.Options{ManualApproval: true})
	for _, approve := range []bool{true, false} {
		c := newSCEPClient(t, s, password(t, s))
		req := c.pkcsReq(t)
		txID := string(req.TransactionID)
		if rep, _ := c.send(t, req.Raw); rep.PKIStatus != scep.PENDING {
			t.Fatalf("PKCSReq: %q, want PENDING", rep.PKIStatus)
		}
		if rep, _ := c.send(t, c.certPoll(t, txID)); rep.PKIStatus != scep.PENDING {
			t.Fatalf("CertPoll before approval: %q, want PENDING", rep.PKIStatus)
		}
		if got := s.PendingTransactions(); len(got) != 1 || got[0] != txID {
			t.Fatalf("PendingTransactions = %q, want [%s]", got, txID)
		}
		if approve {
			if err := s.Approve(txID); err != nil {
				t.Fatal(err)
			}
			rep, _ := c.send(t, c.certPoll(t, txID))
			if rep.PKIStatus != scep.SUCCESS {
				t.Fatalf("CertPoll after Approve: %q", rep.PKIStatus)
			}
			c.checkIssued(t, rep)
		} else {
			if err := s.Reject(txID); err != nil {
				t.Fatal(err)
			}
			rep, raw := c.send(t, c.certPoll(t, txID))
			if rep.PKIStatus != scep.FAILURE || msError(t, raw) != ndes.ErrAdminDenied {
				t.Fatalf("CertPoll after Reject: %q, error code %d", rep.PKIStatus, msError(t, raw))
			}
		}
		if err := s.Approve(txID); err == nil {
			t.Error("Approve of a finished transaction succeeded")
		}
	}
	if c := s.Counters(); c.PKCSReq != 2 || c.CertPoll != 4 {
		t.Errorf("counters = %+v", c)
	}
}

func TestGetOnlyAndOldNDES(t *testing.T) {
	s := ndes.Start(t, ndes.Options{GetOnly: true})
	caps := get(t, s.URL+"?operation=GetCACaps")
	if strings.Contains(caps, "POSTPKIOperation") || !strings.Contains(caps, "SHA-256") {
		t.Errorf("caps = %q", caps)
	}
	c := newSCEPClient(t, s, password(t, s))
	msg := c.pkcsReq(t).Raw
	if _, status, _ := c.post(t, msg); status != http.StatusMethodNotAllowed {
		t.Errorf("POST: HTTP %d, want 405", status)
	}
	q := "operation=PKIOperation&message=" + url.QueryEscape(base64.StdEncoding.EncodeToString(msg))
	resp, err := http.Get(s.URL + "?" + q)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(q) <= 2048 {
		t.Fatalf("test message is only %d bytes", len(q))
	}
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "404.15") {
		t.Errorf("long GET: HTTP %d, want IIS 404.15", resp.StatusCode)
	}

	s.Set(func(o *ndes.Options) { o.MaxQueryBytes = -1 })
	rep, _ := c.sendGET(t, msg)
	if rep.PKIStatus != scep.SUCCESS {
		t.Errorf("GET without the IIS limit: %q", rep.PKIStatus)
	}

	old := ndes.Start(t, ndes.Options{NoCaps: true})
	if resp, err = http.Get(old.URL + "?operation=GetCACaps"); err == nil {
		resp.Body.Close()
		t.Errorf("NoCaps: HTTP %d, want the connection closed", resp.StatusCode)
	}
	old.Set(func(o *ndes.Options) { o.CapsFailure = ndes.CapsEmpty })
	if caps := get(t, old.URL+"?operation=GetCACaps"); caps != "" {
		t.Errorf("CapsEmpty: %q", caps)
	}
	old.Set(func(o *ndes.Options) { o.CapsFailure = ndes.CapsHTTP500 })
	resp, err = http.Get(old.URL + "?operation=GetCACaps")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("CapsHTTP500: HTTP %d", resp.StatusCode)
	}
}

func TestPaths(t *testing.T) {
	s := ndes.Start(t, ndes.Options{})
	base := strings.TrimSuffix(s.URL, "/certsrv/mscep/mscep.dll")
	for _, p := range []string{"/certsrv/mscep/mscep.dll", "/certsrv/mscep/mscep.dll/pkiclient.exe", "/CertSrv/MSCEP/MSCEP.DLL"} {
		if caps := get(t, base+p+"?operation=GetCACaps"); !strings.Contains(caps, "POSTPKIOperation") {
			t.Errorf("%s: caps %q", p, caps)
		}
	}
	if resp, _ := fetch(t, http.DefaultClient, base+"/scep", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/scep: HTTP %d", resp.StatusCode)
	}
	if resp, _ := fetch(t, ntlmClient(t), base+"/CERTSRV/mscep_admin", `CORP\svc-scep`, ndes.DefaultPassword); resp.StatusCode != http.StatusOK {
		t.Errorf("admin without slash: HTTP %d", resp.StatusCode)
	}
}

func TestTLS(t *testing.T) {
	s := ndes.Start(t, ndes.Options{TLS: true})
	if !strings.HasPrefix(s.AdminURL, "https://") || !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("URLs %s, %s", s.URL, s.AdminURL)
	}
	tr := s.HTTP.Client().Transport.(*http.Transport)
	c := &http.Client{Transport: ntlmssp.Negotiator{RoundTripper: tr}}
	resp, body := fetch(t, c, s.AdminURL, `CORP\svc-scep`, ndes.DefaultPassword)
	if resp.StatusCode != http.StatusOK || passwordRE.FindString(decode(body)) == "" {
		t.Errorf("NTLM over TLS: HTTP %d", resp.StatusCode)
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

// scepClient enrols with smallstep's messages over plain net/http.
type scepClient struct {
	url      string
	certs    []*x509.Certificate
	selector scep.CertsSelector
	key      *rsa.PrivateKey
	signer   *x509.Certificate
	csr      *x509.CertificateRequest
}

var (
	keyMu sync.Mutex
	keys  []*rsa.PrivateKey
	nKeys int
)

// nextKey hands out distinct RSA keys (smallstep derives the
// transactionID from the CSR key), generating them once per test binary.
func nextKey(t *testing.T) *rsa.PrivateKey {
	keyMu.Lock()
	defer keyMu.Unlock()
	if nKeys == len(keys) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	nKeys++
	return keys[nKeys-1]
}

func newSCEPClient(t *testing.T, s *ndes.Server, challenge string) *scepClient {
	t.Helper()
	resp, err := http.Get(s.URL + "?operation=GetCACert&message=ca")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-x509-ca-ra-cert" {
		t.Fatalf("GetCACert content type %q", ct)
	}
	certs, err := scep.CACerts(der)
	if err != nil {
		t.Fatal(err)
	}
	key := nextKey(t)
	csrDER, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: "router-1"}, DNSNames: []string{"router-1.corp.example"}},
		ChallengePassword:  challenge,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "SCEP SIGNER"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	self, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := x509.ParseCertificate(self)
	return &scepClient{url: s.URL, certs: certs, selector: scep.EnciphermentCertsSelector(), key: key, signer: signer, csr: csr}
}

func (c *scepClient) pkcsReq(t *testing.T) *scep.PKIMessage {
	t.Helper()
	msg, err := scep.NewCSRRequest(c.csr, &scep.PKIMessage{
		MessageType: scep.PKCSReq,
		Recipients:  c.certs,
		SignerKey:   c.key,
		SignerCert:  c.signer,
	}, scep.WithCertsSelector(c.selector))
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

var (
	oidMessageType   = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidSenderNonce   = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidTransactionID = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
	oidFailInfoText  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 24, 1}
	oidMSError       = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 21, 33}
)

// caOf returns the CA among GetCACert's certificates (NDES sends it last).
func caOf(certs []*x509.Certificate) *x509.Certificate {
	for _, c := range certs {
		if c.IsCA {
			return c
		}
	}
	return nil
}

// certPoll builds a CertPoll (IssuerAndSubject enveloped to the RA
// encryption certificate, signed like the PKCSReq).
func (c *scepClient) certPoll(t *testing.T, txID string) []byte {
	t.Helper()
	ias, err := asn1.Marshal(struct{ Issuer, Subject asn1.RawValue }{
		Issuer:  asn1.RawValue{FullBytes: caOf(c.certs).RawSubject},
		Subject: asn1.RawValue{FullBytes: c.csr.RawSubject},
	})
	if err != nil {
		t.Fatal(err)
	}
	env, err := pkcs7.Encrypt(ias, c.selector.SelectCerts(c.certs))
	if err != nil {
		t.Fatal(err)
	}
	sd, err := pkcs7.NewSignedData(env)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	err = sd.AddSigner(c.signer, c.key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: []pkcs7.Attribute{
		{Type: oidTransactionID, Value: txID},
		{Type: oidMessageType, Value: "20"},
		{Type: oidSenderNonce, Value: nonce},
	}})
	if err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// post sends a pkiMessage over POST and returns the reply unparsed.
func (c *scepClient) post(t *testing.T, msg []byte) (*http.Response, int, []byte) {
	t.Helper()
	resp, err := http.Post(c.url+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, resp.StatusCode, body
}

// send POSTs a pkiMessage and returns the CertRep, decrypted on SUCCESS.
func (c *scepClient) send(t *testing.T, msg []byte) (*scep.PKIMessage, []byte) {
	t.Helper()
	_, status, body := c.post(t, msg)
	if status != http.StatusOK {
		t.Fatalf("PKIOperation: HTTP %d %s", status, body)
	}
	return c.parse(t, body)
}

func (c *scepClient) sendGET(t *testing.T, msg []byte) (*scep.PKIMessage, []byte) {
	t.Helper()
	resp, err := http.Get(c.url + "?operation=PKIOperation&message=" + url.QueryEscape(base64.StdEncoding.EncodeToString(msg)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET PKIOperation: HTTP %d %s", resp.StatusCode, body)
	}
	return c.parse(t, body)
}

func (c *scepClient) parse(t *testing.T, raw []byte) (*scep.PKIMessage, []byte) {
	t.Helper()
	rep, err := scep.ParsePKIMessage(raw, scep.WithCACerts(c.certs))
	if err != nil {
		t.Fatal(err)
	}
	if rep.PKIStatus == scep.SUCCESS {
		if err := rep.DecryptPKIEnvelope(c.signer, c.key); err != nil {
			t.Fatal(err)
		}
	}
	return rep, raw
}

func (c *scepClient) checkIssued(t *testing.T, rep *scep.PKIMessage) {
	t.Helper()
	crt := rep.Certificate
	if err := crt.CheckSignatureFrom(caOf(c.certs)); err != nil {
		t.Errorf("issued certificate not signed by the CA: %v", err)
	}
	if !c.key.PublicKey.Equal(crt.PublicKey) || crt.Subject.CommonName != "router-1" {
		t.Errorf("issued certificate is for %s, not the CSR", crt.Subject)
	}
}

func failInfoText(t *testing.T, certRep []byte) string {
	t.Helper()
	return stringAttr(t, certRep, oidFailInfoText)
}

// msError returns the HRESULT in a CertRep's Microsoft error-code
// attribute, 0 if it has none.
func msError(t *testing.T, certRep []byte) int32 {
	t.Helper()
	text := stringAttr(t, certRep, oidMSError)
	if text == "" {
		return 0
	}
	code, err := strconv.ParseInt(text, 10, 32)
	if err != nil {
		t.Fatalf("error code %q: %v", text, err)
	}
	return int32(code)
}

// stringAttr returns a CertRep's string attribute oid, "" if it has none.
func stringAttr(t *testing.T, certRep []byte, oid asn1.ObjectIdentifier) string {
	t.Helper()
	p7, err := pkcs7.Parse(certRep)
	if err != nil {
		t.Fatal(err)
	}
	var text string
	_ = p7.UnmarshalSignedAttribute(oid, &text)
	return text
}
