package interop

import (
	"crypto"
	"crypto/x509"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/test/stepca"
)

// TestStepCA runs the client against step-ca's SCEP provisioner over HTTPS:
// an EC intermediate, an RSA decrypter, and a challenge.
func TestStepCA(t *testing.T) {
	srv := stepca.Start(t, stepca.Options{Challenge: "s3cret", IncludeRoot: true})
	c := newClient(t, scepclient.Config{URL: srv.URL, RootCAs: srv.RootPool})
	pin := scep.FingerprintOf(srv.Root, crypto.SHA256)
	info, err := c.Discover(ctxT(t), &pin)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("GetCACert roles, recipient and issuer", func(t *testing.T) {
		roles := map[string]scep.Role{}
		for _, cc := range info.CACerts.Certs {
			roles[cc.Subject.CommonName] = cc.Role
		}
		if len(roles) != 3 || roles[srv.Intermediate.Subject.CommonName] != scep.RoleCA || roles[srv.Root.Subject.CommonName] != scep.RoleCA || roles[srv.Decrypter.Subject.CommonName] != scep.RoleRA {
			t.Errorf("roles = %v", roles)
		}
		if !info.Recipient.Equal(srv.Decrypter) {
			t.Errorf("recipient = %v, want the RSA decrypter (the intermediate is EC)", info.Recipient.Subject)
		}
		if !info.Issuer.Equal(srv.Intermediate) {
			t.Errorf("issuer = %v, want the intermediate", info.Issuer.Subject)
		}
	})

	for _, bits := range []int{2048, 3072, 4096} {
		t.Run("PKCSReq RSA-"+itoa(bits), func(t *testing.T) {
			rep, _, csr, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("step" + itoa(bits)), ChallengePassword: "s3cret"}, key: rsaKey(t, bits, 1)})
			checkIssued(t, rep, err, csr, srv.Root)
			// step-ca's reply holds the leaf and its decrypter; the chain is
			// completed from GetCACert and the decrypter left out.
			if len(rep.Certificates) != 3 || !rep.Certificates[1].Equal(srv.Intermediate) || !rep.Certificates[2].Equal(srv.Root) {
				t.Errorf("chain has %d certificates, want leaf, intermediate, root", len(rep.Certificates))
			}
		})
	}

	t.Run("SANs of all four types", func(t *testing.T) {
		u, _ := url.Parse("spiffe://corp.example/ns/team/sa/app")
		tmpl := scep.CSRTemplate{
			Subject:           name("step-sans"),
			DNSNames:          []string{"app.corp.example"},
			EmailAddresses:    []string{"app@corp.example"},
			URIs:              []*url.URL{u},
			UPNs:              []string{"app@corp.example"},
			ChallengePassword: "s3cret",
		}
		rep, _, csr, err := enroll(t, c, info, enrollment{tmpl: tmpl, key: rsaKey(t, 2048, 2)})
		leaf := checkIssued(t, rep, err, csr, srv.Root)
		if !reflect.DeepEqual(leaf.DNSNames, tmpl.DNSNames) || !reflect.DeepEqual(leaf.EmailAddresses, tmpl.EmailAddresses) || len(leaf.URIs) != 1 {
			t.Errorf("issued SANs: dns %v email %v uri %v", leaf.DNSNames, leaf.EmailAddresses, leaf.URIs)
		}
		if upns, err := scep.UPNs(csr.Extensions); err != nil || !reflect.DeepEqual(upns, tmpl.UPNs) {
			t.Errorf("UPN in the request = %v, %v", upns, err)
		}
	})

	t.Run("wrong challenge is FAILURE badRequest with step-ca's text", func(t *testing.T) {
		_, _, _, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("step-wrong"), ChallengePassword: "nope"}, key: rsaKey(t, 2048, 3)})
		var fe *scep.FailureError
		if !errors.As(err, &fe) || fe.FailInfo != scep.BadRequest || fe.Text == "" {
			t.Fatalf("err = %#v, want FAILURE badRequest with failInfoText", err)
		}
	})

	t.Run("separate RSA signer (Passthrough)", func(t *testing.T) {
		signer, err := scep.NewSelfSignedSigner(rsaKey(t, 2048, 4), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		rep, _, csr, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("step-pass"), ChallengePassword: "s3cret"}, key: rsaKey(t, 2048, 5), signer: signer})
		checkIssued(t, rep, err, csr, srv.Root)
	})

	t.Run("RenewalReq", func(t *testing.T) {
		key := rsaKey(t, 2048, 6)
		rep, _, csr, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("step-renew"), ChallengePassword: "s3cret"}, key: key})
		old := checkIssued(t, rep, err, csr, srv.Root)
		rep, _, csr, err = enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("step-renew"), ChallengePassword: "s3cret"}, key: key, signer: &scep.Signer{Certificate: old, Key: key}, renew: true})
		if renewed := checkIssued(t, rep, err, csr, srv.Root); renewed.SerialNumber.Cmp(old.SerialNumber) == 0 {
			t.Errorf("RenewalReq returned the old certificate")
		}
	})

	t.Run("GET", func(t *testing.T) {
		getOnly := *info
		getOnly.Caps = scep.NewCapabilities(scep.CapAES, scep.CapSHA256)
		rec := &recorder{base: srv.HTTPClient().Transport}
		gc := newClient(t, scepclient.Config{URL: srv.URL, Transport: rec, MaxGETQueryBytes: 16 << 10})
		rep, _, csr, err := enroll(t, gc, &getOnly, enrollment{tmpl: scep.CSRTemplate{Subject: name("step-get"), ChallengePassword: "s3cret"}, key: rsaKey(t, 2048, 7)})
		checkIssued(t, rep, err, csr, srv.Root)
		if got := rec.methods(); !reflect.DeepEqual(got, []string{"GET PKIOperation"}) {
			t.Errorf("requests = %v", got)
		}
	})

	t.Run("pin of the intermediate works, a wrong pin stops", func(t *testing.T) {
		mid := scep.FingerprintOf(srv.Intermediate, crypto.SHA1)
		if _, err := newClient(t, scepclient.Config{URL: srv.URL, RootCAs: srv.RootPool}).Discover(ctxT(t), &mid); err != nil {
			t.Errorf("pin on the intermediate: %v", err)
		}
		wrong := scep.FingerprintOf(srv.Decrypter, crypto.MD5)
		wrong.Sum[0] ^= 0xff
		_, err := newClient(t, scepclient.Config{URL: srv.URL, RootCAs: srv.RootPool}).Discover(ctxT(t), &wrong)
		var mm *scep.FingerprintMismatchError
		if !errors.As(err, &mm) || len(mm.Seen) != 3 {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("https without the CA bundle is refused", func(t *testing.T) {
		_, err := newClient(t, scepclient.Config{URL: srv.URL}).GetCACert(ctxT(t))
		var uae x509.UnknownAuthorityError
		if !errors.As(err, &uae) || !strings.Contains(err.Error(), "GetCACert") {
			t.Errorf("err = %v, want an unknown-authority error naming GetCACert", err)
		}
	})
}

// TestStepCAReplyCiphers checks replies in the ciphers step-ca can be set
// to (its default is DES-CBC whatever the request used) and step-ca
// without a decrypter, where the RSA intermediate is the recipient.
func TestStepCAReplyCiphers(t *testing.T) {
	for label, opts := range map[string]stepca.Options{
		"AES-256-GCM reply":              {EncryptionAlgorithmIdentifier: stepca.EncryptAES256GCM},
		"AES-128-CBC reply":              {EncryptionAlgorithmIdentifier: stepca.EncryptAES128CBC},
		"no decrypter, RSA intermediate": {RSAIntermediate: true, NoDecrypter: true},
	} {
		t.Run(label, func(t *testing.T) {
			srv := stepca.Start(t, opts)
			c := newClient(t, scepclient.Config{URL: srv.URL, RootCAs: srv.RootPool})
			info, err := c.Discover(ctxT(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			rep, _, csr, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("ciphers")}, key: rsaKey(t, 2048, 0)})
			checkIssued(t, rep, err, csr, srv.Root)
			if opts.NoDecrypter && !info.Recipient.Equal(srv.Intermediate) {
				t.Errorf("recipient = %v", info.Recipient.Subject)
			}
		})
	}
}
