package interop

import (
	"crypto"
	"crypto/x509"
	"errors"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/test/micromdm"
)

func TestMicroMDM(t *testing.T) {
	srv := micromdm.Start(t, micromdm.Options{Challenge: "s3cret"})
	c := newClient(t, scepclient.Config{URL: srv.URL})
	pin := scep.FingerprintOf(srv.CA, crypto.SHA256)
	info, err := c.Discover(ctxT(t), &pin)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("caps", func(t *testing.T) {
		got := info.Caps.Strings()
		sort.Strings(got)
		want := []string{"AES", "DES3", "POSTPKIOperation", "Renewal", "SCEPStandard", "SHA-1", "SHA-256"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("caps = %v, want %v", got, want)
		}
		if info.Algorithms.Cipher != scep.CipherAES256CBC || info.Algorithms.Digest != crypto.SHA256 {
			t.Errorf("algorithms = %v", info.Algorithms)
		}
		// Cached: a second call makes no request.
		before := srv.Requests("GetCACaps")
		if _, err := c.GetCACaps(ctxT(t)); err != nil || srv.Requests("GetCACaps") != before {
			t.Errorf("GetCACaps not cached: %v, %d requests", err, srv.Requests("GetCACaps"))
		}
	})

	t.Run("recipient is the CA (no RA, no keyEncipherment)", func(t *testing.T) {
		if !info.Recipient.Equal(srv.CA) {
			t.Errorf("recipient = %v", info.Recipient.Subject)
		}
	})

	for _, bits := range []int{2048, 3072, 4096} {
		t.Run("PKCSReq RSA-"+itoa(bits), func(t *testing.T) {
			rep, _, csr, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("rsa" + itoa(bits)), ChallengePassword: "s3cret"}, key: rsaKey(t, bits, 0)})
			checkIssued(t, rep, err, csr, srv.CA)
		})
	}

	t.Run("SANs of all four types", func(t *testing.T) {
		u, _ := url.Parse("spiffe://corp.example/ns/team/sa/app")
		tmpl := scep.CSRTemplate{
			Subject:           name("sans"),
			DNSNames:          []string{"app.corp.example"},
			EmailAddresses:    []string{"app@corp.example"},
			URIs:              []*url.URL{u},
			UPNs:              []string{"app@corp.example"},
			ChallengePassword: "s3cret",
		}
		rep, _, csr, err := enroll(t, c, info, enrollment{tmpl: tmpl, key: rsaKey(t, 2048, 1)})
		leaf := checkIssued(t, rep, err, csr, srv.CA)
		if !reflect.DeepEqual(leaf.DNSNames, tmpl.DNSNames) || !reflect.DeepEqual(leaf.EmailAddresses, tmpl.EmailAddresses) ||
			len(leaf.URIs) != 1 || leaf.URIs[0].String() != u.String() {
			t.Errorf("issued SANs: dns %v email %v uri %v", leaf.DNSNames, leaf.EmailAddresses, leaf.URIs)
		}
		// MicroMDM copies only the SAN types crypto/x509 parses, so the UPN
		// otherName is checked in the request it received; the misbehaving
		// server and step-ca tests check it in issued certificates.
		if upns, err := scep.UPNs(csr.Extensions); err != nil || !reflect.DeepEqual(upns, tmpl.UPNs) {
			t.Errorf("UPN in the request = %v, %v", upns, err)
		}
	})

	t.Run("wrong challenge is FAILURE badRequest", func(t *testing.T) {
		rep, _, _, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("wrong"), ChallengePassword: "nope"}, key: rsaKey(t, 2048, 2)})
		var fe *scep.FailureError
		if !errors.As(err, &fe) || fe.FailInfo != scep.BadRequest || rep.Status != scep.StatusFailure {
			t.Fatalf("err = %v, want FAILURE badRequest", err)
		}
		if scepclient.IsTransient(err) {
			t.Errorf("a FAILURE must not be transient")
		}
	})

	t.Run("separate RSA signer (Passthrough)", func(t *testing.T) {
		// The pkiMessage is signed by another key than the CSR's; MicroMDM
		// accepts it and envelopes the reply to that signer.
		signer, err := scep.NewSelfSignedSigner(rsaKey(t, 2048, 3), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		rep, _, csr, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("passthrough"), ChallengePassword: "s3cret"}, key: rsaKey(t, 2048, 4), signer: signer})
		checkIssued(t, rep, err, csr, srv.CA)
	})

	t.Run("RenewalReq signed with the current certificate", func(t *testing.T) {
		key := rsaKey(t, 2048, 5)
		rep, _, csr, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("renew"), ChallengePassword: "s3cret"}, key: key})
		old := checkIssued(t, rep, err, csr, srv.CA)
		before := srv.PKIMessages("RenewalReq")
		// MicroMDM's challenge middleware checks RenewalReq too.
		rep, _, csr, err = enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("renew"), ChallengePassword: "s3cret"}, key: key, signer: &scep.Signer{Certificate: old, Key: key}, renew: true})
		renewed := checkIssued(t, rep, err, csr, srv.CA)
		if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 || srv.PKIMessages("RenewalReq") != before+1 {
			t.Errorf("no new certificate from RenewalReq")
		}
	})

	t.Run("GET when POST is not announced", func(t *testing.T) {
		getOnly := *info
		getOnly.Caps = scep.NewCapabilities(scep.CapAES, scep.CapSHA256)
		e := enrollment{tmpl: scep.CSRTemplate{Subject: name("get"), ChallengePassword: "s3cret"}, key: rsaKey(t, 2048, 6)}

		// An RSA-2048 PKCSReq does not fit IIS's default 2048-byte query:
		// a client told that limit refuses before sending.
		_, _, _, err := enroll(t, newClient(t, scepclient.Config{URL: srv.URL, MaxGETQueryBytes: 2048}), &getOnly, e)
		if !errors.Is(err, scepclient.ErrQueryTooLong) || !strings.Contains(err.Error(), "POSTPKIOperation") || !strings.Contains(err.Error(), "maxQueryString") {
			t.Fatalf("err = %v, want a query-too-long error naming POST and maxQueryString", err)
		}

		// MicroMDM has no such limit; raised, the GET goes through.
		rec := &recorder{}
		gc := newClient(t, scepclient.Config{URL: srv.URL, Transport: rec, MaxGETQueryBytes: 16 << 10})
		rep, _, csr, err := enroll(t, gc, &getOnly, e)
		checkIssued(t, rep, err, csr, srv.CA)
		if got := rec.methods(); !reflect.DeepEqual(got, []string{"GET PKIOperation"}) {
			t.Errorf("requests = %v, want one GET PKIOperation", got)
		}
	})

	t.Run("pin mismatch stops before any PKIOperation", func(t *testing.T) {
		other := scep.FingerprintOf(&x509.Certificate{Raw: []byte("other")}, crypto.SHA1)
		before := srv.Requests("PKIOperation")
		_, err := newClient(t, scepclient.Config{URL: srv.URL}).Discover(ctxT(t), &other)
		var mm *scep.FingerprintMismatchError
		if !errors.As(err, &mm) || srv.Requests("PKIOperation") != before {
			t.Fatalf("err = %v", err)
		}
	})
}
