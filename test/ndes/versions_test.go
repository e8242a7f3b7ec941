package ndes_test

import (
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"

	"github.com/scep-operator/scep-operator/test/ndes"
)

// TestVersions: each preset's Server header, GetCACaps and POST, as the
// releases answer.
func TestVersions(t *testing.T) {
	for _, tc := range []struct {
		v      ndes.Version
		server string
		caps   string // "" when GetCACaps fails
		post   int    // HTTP status of a POST PKIOperation
	}{
		{ndes.Version2016, "Microsoft-IIS/10.0", "POSTPKIOperation\nRenewal\nSHA-512\nSHA-256\nSHA-1\nDES3", http.StatusOK},
		{ndes.Version2012R2, "Microsoft-IIS/8.5", "POSTPKIOperation\nRenewal\nSHA-512\nSHA-256\nSHA-1\nDES3", http.StatusOK},
		{ndes.Version2008, "Microsoft-IIS/7.0", "", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.v.String(), func(t *testing.T) {
			s := ndes.Start(t, ndes.Options{Version: tc.v})
			resp, err := http.Get(s.URL + "?operation=GetCACert")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Server"); got != tc.server {
				t.Errorf("Server %q, want %q", got, tc.server)
			}
			if tc.caps != "" {
				if got := get(t, s.URL+"?operation=GetCACaps"); got != tc.caps {
					t.Errorf("caps %q, want %q", got, tc.caps)
				}
			} else if resp, err := http.Get(s.URL + "?operation=GetCACaps"); err == nil {
				resp.Body.Close()
				t.Errorf("GetCACaps answered HTTP %d; NDES 2008 closes the connection", resp.StatusCode)
			}

			c := newSCEPClient(t, s, s.IssuePassword())
			_, status, body := c.post(t, c.pkcsReq(t).Raw)
			if status != tc.post {
				t.Errorf("POST: HTTP %d, want %d", status, tc.post)
			}
			if tc.v == ndes.Version2012R2 && len(body) != 0 {
				t.Errorf("POST on 2012 R2 answered %d bytes; it answers none", len(body))
			}
			if got := s.Counters().PasswordsConsumed; tc.post != http.StatusOK || tc.v == ndes.Version2012R2 {
				if got != 0 {
					t.Errorf("a POST that was not processed used %d passwords", got)
				}
			}
		})
	}
}

// TestReplyForm: every release signs as the real NDES 2012 reply of sscep
// issue 59 is signed: signature algorithm rsaEncryption, no certificates,
// no signingTime; a FAILURE carries one 0x00 byte as content and the error
// code, no failInfoText.
func TestReplyForm(t *testing.T) {
	s := ndes.Start(t, ndes.Options{})
	pw := s.IssuePassword()
	for _, want := range []scep.PKIStatus{scep.SUCCESS, scep.FAILURE} {
		c := newSCEPClient(t, s, pw)
		rep, raw := c.send(t, c.pkcsReq(t).Raw)
		if rep.PKIStatus != want {
			t.Fatalf("pkiStatus %q, want %q", rep.PKIStatus, want)
		}
		p7, err := pkcs7.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		si := p7.Signers[0]
		if len(p7.Certificates) != 0 || !si.DigestEncryptionAlgorithm.Algorithm.Equal(pkcs7.OIDEncryptionAlgorithmRSA) {
			t.Errorf("%s: %d certificates, signature algorithm %v", want, len(p7.Certificates), si.DigestEncryptionAlgorithm.Algorithm)
		}
		var signingTime time.Time
		if p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &signingTime) == nil {
			t.Errorf("%s: a signingTime", want)
		}
		if want == scep.FAILURE && (string(p7.Content) != "\x00" || failInfoText(t, raw) != "" || msError(t, raw) != ndes.ErrInvalidPassword) {
			t.Errorf("FAILURE content %x, failInfoText %q, error code %d", p7.Content, failInfoText(t, raw), msError(t, raw))
		}
	}
}

// TestFailWith: the codes of a CA that refuses (template permissions) or
// is down.
func TestFailWith(t *testing.T) {
	for _, code := range []int32{ndes.ErrTemplateDenied, ndes.ErrCAUnavailable} {
		s := ndes.Start(t, ndes.Options{FailWith: code})
		c := newSCEPClient(t, s, s.IssuePassword())
		rep, raw := c.send(t, c.pkcsReq(t).Raw)
		if rep.PKIStatus != scep.FAILURE || rep.FailInfo != scep.BadRequest || msError(t, raw) != code {
			t.Errorf("FailWith %d: %q/%q code %d", code, rep.PKIStatus, rep.FailInfo, msError(t, raw))
		}
	}
}

// TestResentPKCSReq: the open question of a PKCSReq resent while PENDING,
// both ways. By default the one-time password is checked again, so the
// resend is refused (it was used); with ResendIsPoll the resend is
// answered as a poll, up to the certificate after approval.
func TestResentPKCSReq(t *testing.T) {
	s := ndes.Start(t, ndes.Options{ManualApproval: true})
	c := newSCEPClient(t, s, s.IssuePassword())
	req := c.pkcsReq(t)
	if rep, _ := c.send(t, req.Raw); rep.PKIStatus != scep.PENDING {
		t.Fatalf("PKCSReq: %q", rep.PKIStatus)
	}
	if rep, raw := c.send(t, req.Raw); rep.PKIStatus != scep.FAILURE || msError(t, raw) != ndes.ErrInvalidPassword {
		t.Errorf("resent by default: %q code %d, want the used password refused", rep.PKIStatus, msError(t, raw))
	}

	s.Set(func(o *ndes.Options) { o.ResendIsPoll = true })
	if rep, _ := c.send(t, req.Raw); rep.PKIStatus != scep.PENDING {
		t.Errorf("resent as a poll before approval: %q", rep.PKIStatus)
	}
	if got := s.ApproveAll(); len(got) != 1 || got[0] != string(req.TransactionID) {
		t.Fatalf("approved %v", got)
	}
	rep, _ := c.send(t, req.Raw)
	if rep.PKIStatus != scep.SUCCESS {
		t.Fatalf("resent as a poll after approval: %q", rep.PKIStatus)
	}
	c.checkIssued(t, rep)
}

// TestURLSafeBase64: the open question of URL-safe base64 in a GET
// message (MicroMDM's client sends it), both ways.
func TestURLSafeBase64(t *testing.T) {
	s := ndes.Start(t, ndes.Options{MaxQueryBytes: -1})
	c := newSCEPClient(t, s, s.IssuePassword())
	msg := c.pkcsReq(t).Raw
	for base64.StdEncoding.EncodeToString(msg) == base64.URLEncoding.EncodeToString(msg) {
		c = newSCEPClient(t, s, s.IssuePassword()) // needs a '+' or '/'
		msg = c.pkcsReq(t).Raw
	}
	u := s.URL + "?operation=PKIOperation&message=" + base64.URLEncoding.EncodeToString(msg)
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || s.Counters().PKCSReq != 0 {
		t.Errorf("URL-safe by default: HTTP %d, %d PKCSReq read; want 400 and none", resp.StatusCode, s.Counters().PKCSReq)
	}

	s.Set(func(o *ndes.Options) { o.URLSafeBase64 = true })
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding} {
		c := newSCEPClient(t, s, s.IssuePassword())
		msg := c.pkcsReq(t).Raw
		resp, err := http.Get(s.URL + "?operation=PKIOperation&message=" + enc.EncodeToString(msg))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("URL-safe allowed: HTTP %d %s", resp.StatusCode, body)
		}
		if rep, _ := c.parse(t, body); rep.PKIStatus != scep.SUCCESS {
			t.Errorf("URL-safe allowed: %q", rep.PKIStatus)
		}
	}
}

// TestGetCACertOrder: NDES returns RA signing, RA encryption, CA (sscep
// issue 156), on every release.
func TestGetCACertOrder(t *testing.T) {
	s := ndes.Start(t, ndes.Options{Version: ndes.Version2008})
	c := newSCEPClient(t, s, "")
	if !slices.EqualFunc(c.certs, []*x509.Certificate{s.RASign, s.RAEncrypt, s.CA}, func(a, b *x509.Certificate) bool { return a.Equal(b) }) {
		names := []string{}
		for _, crt := range c.certs {
			names = append(names, crt.Subject.CommonName)
		}
		t.Errorf("GetCACert order %s", strings.Join(names, ", "))
	}
}
