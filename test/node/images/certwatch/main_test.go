package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/scep-operator/scep-operator/test/node"
)

// TestReportParses checks that what certwatch prints is what the e2e test
// and the demo parse (node.ParseReports), for files that fit and do not.
func TestReportParses(t *testing.T) {
	ca, caKey := cert(t, "CA", nil, nil, true)
	other, _ := cert(t, "other CA", nil, nil, true)
	leaf, leafKey := cert(t, "web", ca, caKey, false)
	_, strangerKey := cert(t, "stranger", ca, caKey, false)
	sum := sha256.Sum256(ca.Raw)

	for _, tc := range []struct {
		name           string
		key, caCert    []byte
		keyOK, chainOK bool
		serving        bool
	}{
		{"fits", keyPEM(t, leafKey), certPEM(ca), true, true, true},
		{"another key", keyPEM(t, strangerKey), certPEM(ca), false, true, false},
		{"another CA", keyPEM(t, leafKey), certPEM(other), true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, pair := report(certPEM(leaf), tc.key, tc.caCert)
			if strings.Contains(line, "PRIVATE KEY") {
				t.Fatalf("the report prints the key: %s", line)
			}
			reports, err := node.ParseReports(line)
			if err != nil || len(reports) != 1 {
				t.Fatalf("ParseReports(%q) = %v, %v", line, reports, err)
			}
			r := reports[0]
			if r.Serial != leaf.SerialNumber.Text(16) || r.KeyMatches != tc.keyOK || r.ChainVerified != tc.chainOK {
				t.Errorf("report %q: serial %s key %v chain %v", line, r.Serial, r.KeyMatches, r.ChainVerified)
			}
			if len(r.DNSNames) != 1 || r.DNSNames[0] != "web.example" {
				t.Errorf("report %q: DNS names %v", line, r.DNSNames)
			}
			if (r.Err == "") != (tc.keyOK && tc.chainOK) {
				t.Errorf("report %q: err %q", line, r.Err)
			}
			if tc.chainOK && r.CASHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("report %q: ca-sha256 %s", line, r.CASHA256)
			}
			if (pair != nil) != tc.serving {
				t.Errorf("serving a pair: %v, want %v", pair != nil, tc.serving)
			}
		})
	}
}

func cert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if !isCA {
		tmpl.DNSNames = []string{cn + ".example"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}
