package main

import (
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scep-operator/scep-operator/test/ndes"
)

// TestEnrollTemplate enrolls at the NDES emulator with --template and each
// --key-usage: the CSR names the template, NDES's registry picks by key
// usage, and scepctl says what it asked for.
func TestEnrollTemplate(t *testing.T) {
	srv := ndes.Start(t, ndes.Options{SinglePassword: "static-pw", Templates: ndes.RegistryTemplates{Signature: "Sig", Encryption: "Enc", GeneralPurpose: "Both"}})
	pw := writeFile(t, "challenge", "static-pw")
	for _, tc := range []struct {
		usage string
		ku    x509.KeyUsage
		want  string
	}{
		{"signing", x509.KeyUsageDigitalSignature, "Sig"},
		{"encipherment", x509.KeyUsageKeyEncipherment, "Enc"},
		{"both", x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, "Both"},
	} {
		t.Run(tc.usage, func(t *testing.T) {
			dir := t.TempDir()
			code, _, stderr := runCLI("enroll", "--url", srv.URL, "--subject", "CN=tmpl-"+tc.usage, "--key-usage", tc.usage, "--template", "Router-Template",
				"--challenge-file", pw, "--key", filepath.Join(dir, "key.pem"), "--out", filepath.Join(dir, "cert.pem"))
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stderr, `asking for certificate template "Router-Template" (extension 1.3.6.1.4.1.311.20.2`) {
				t.Errorf("scepctl does not say which template it asks for:\n%s", stderr)
			}
			var got *ndes.Enrollment
			for _, e := range srv.Enrollments() {
				if e.Subject == "CN=tmpl-"+tc.usage {
					got = &e
				}
			}
			if got == nil || got.KeyUsage != tc.ku || got.Template != tc.want || got.RequestedTemplate != "Router-Template" {
				t.Fatalf("NDES saw %+v; want key usage %v, registry template %s, requested Router-Template", got, tc.ku, tc.want)
			}
		})
	}
	t.Run("a name that is too long", func(t *testing.T) {
		code, _, stderr := runCLI("enroll", "--url", srv.URL, "--subject", "CN=x", "--template", strings.Repeat("x", 65), "--challenge-file", pw, "--out", filepath.Join(t.TempDir(), "c.pem"))
		if code != 2 || !strings.Contains(stderr, "--template") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
}
