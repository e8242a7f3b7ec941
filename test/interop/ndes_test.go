package interop

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/scep-operator/scep-operator/test/ndes"
)

// TestScepctlNDES drives scepctl against the NDES emulator: a fresh one-time
// password over NTLM, and an enrollment that fetches its own password,
// encrypts to the CEP Encryption certificate and pins the CA by the
// thumbprint the admin page prints.
func TestScepctlNDES(t *testing.T) {
	srv := ndes.Start(t, ndes.Options{})
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "ndes-password")
	if err := os.WriteFile(pwFile, []byte(ndes.DefaultPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	user := ndes.DefaultDomain + `\` + ndes.DefaultUsername

	t.Run("ndes-password prints one fresh password", func(t *testing.T) {
		code, stdout, stderr := scepctl(t, "ndes-password", "--url", srv.AdminURL, "--allow-plain-http", "--username", user, "--password-file", pwFile)
		if code != 0 || !regexp.MustCompile(`^[0-9A-F]{16}\n$`).MatchString(stdout) {
			t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
		}
		if strings.Contains(stdout+stderr, ndes.DefaultPassword) {
			t.Errorf("the account password was printed")
		}
		if srv.UnusedPasswords() != 1 {
			t.Errorf("unused passwords = %d, want 1", srv.UnusedPasswords())
		}
	})

	t.Run("wrong credentials: exit 1 naming the user", func(t *testing.T) {
		bad := filepath.Join(dir, "bad")
		_ = os.WriteFile(bad, []byte("not-the-password"), 0o600)
		code, _, stderr := scepctl(t, "ndes-password", "--url", srv.AdminURL, "--allow-plain-http", "--username", user, "--password-file", bad)
		if code != 1 || !strings.Contains(stderr, ndes.DefaultUsername) || strings.Contains(stderr, "not-the-password") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})

	t.Run("enroll --ndes-admin-url", func(t *testing.T) {
		before := srv.Counters()
		out := filepath.Join(dir, "dev.pem")
		code, stdout, stderr := scepctl(t, "enroll", "--url", srv.URL, "--subject", "CN=device-1,O=Corp", "--upn", "device-1@corp.example",
			"--fingerprint", srv.Thumbprint, "--ndes-admin-url", srv.AdminURL, "--ndes-allow-plain-http", "--ndes-username", user, "--ndes-password-file", pwFile, "--out", out)
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		certs := readPEMCerts(t, out)
		if len(certs) == 0 || certs[0].Subject.CommonName != "device-1" || certs[0].CheckSignatureFrom(srv.CA) != nil {
			t.Fatalf("issued %v", certs)
		}
		after := srv.Counters()
		if after.PasswordsConsumed != before.PasswordsConsumed+1 {
			t.Errorf("passwords consumed %d -> %d, want one more", before.PasswordsConsumed, after.PasswordsConsumed)
		}
	})
}
