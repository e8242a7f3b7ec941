package scepclient

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestGetNextCACert: a server that announces its next CA answers
// GetNextCACert with it, signed by the current CA (or NDES's RA signing
// certificate); the client takes it only when a certificate it trusts now
// signed it, never one the CA issued to someone else.
func TestGetNextCACert(t *testing.T) {
	workloadKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		behavior scepserver.Behavior
		announce func(t *testing.T, s *scepserver.Server) *x509.Certificate
		wantErr  string
	}{
		{name: "signed by the CA", announce: announce},
		{name: "signed by the RA (NDES)", behavior: scepserver.Behavior{RASplit: true}, announce: announce},
		{name: "none announced", wantErr: ErrNoNextCA.Error()},
		{name: "signed by a workload certificate of the CA", wantErr: "does not verify against the CA/RA certificates trusted now", announce: func(t *testing.T, s *scepserver.Server) *x509.Certificate {
			leaf := issueLeaf(t, s.CA, s.CAKey, workloadKey)
			next, err := s.AnnounceNextCASignedBy(leaf, workloadKey)
			if err != nil {
				t.Fatal(err)
			}
			return next
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := scepserver.Start(t, tc.behavior)
			var want *x509.Certificate
			if tc.announce != nil {
				want = tc.announce(t, srv)
			}
			c, _ := newTestClient(t, Config{URL: srv.URL})
			info, err := c.DiscoverWith(ctx(t), DiscoverOptions{Pins: []scep.Fingerprint{scep.FingerprintOf(srv.CA, crypto.SHA256)}, Now: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			next, err := c.GetNextCACert(ctx(t), info)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("GetNextCACert = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fresh := scep.NewCAs(next, info.CACerts)
			if len(fresh) != 1 || !fresh[0].Equal(want) {
				t.Fatalf("next CA certificates = %v, want the announced one", fresh)
			}
		})
	}
}

// TestDiscoverSeveralPins: any pin of several may match (old and new CA
// during a rollover); none matching is a mismatch naming every pin.
func TestDiscoverSeveralPins(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{})
	c, _ := newTestClient(t, Config{URL: srv.URL})
	other, err := scep.ParseFingerprint(strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	right := scep.FingerprintOf(srv.CA, crypto.SHA1)
	if _, err := c.DiscoverWith(ctx(t), DiscoverOptions{Pins: []scep.Fingerprint{other, right}}); err != nil {
		t.Fatalf("one matching pin of two: %v", err)
	}
	_, err = c.DiscoverWith(ctx(t), DiscoverOptions{Pins: []scep.Fingerprint{other, other}})
	var mismatch *scep.FingerprintMismatchError
	if !errors.As(err, &mismatch) || !strings.Contains(err.Error(), " or ") {
		t.Fatalf("no matching pin: %v, want a mismatch naming both pins", err)
	}
}

func announce(t *testing.T, s *scepserver.Server) *x509.Certificate {
	t.Helper()
	next, err := s.AnnounceNextCA()
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// issueLeaf has ca issue an end-entity certificate for key, as it would
// for any workload.
func issueLeaf(t *testing.T, ca *x509.Certificate, caKey *rsa.PrivateKey, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "workload"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}
