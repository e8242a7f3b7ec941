package interop

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stepca"
)

var (
	scepctlOnce sync.Once
	scepctlPath string
	scepctlDir  string // what TestMain removes
	scepctlErr  error
)

// TestMain removes the scepctl binary built for the package's tests: each
// `make test` left a directory of its own in the system's temporary one.
func TestMain(m *testing.M) {
	code := m.Run()
	if scepctlDir != "" {
		_ = os.RemoveAll(scepctlDir)
	}
	os.Exit(code)
}

// scepctl builds cmd/scepctl once per test binary (or uses SCEPCTL_BIN) and
// runs it as an admin would, returning exit code, stdout and stderr.
func scepctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	scepctlOnce.Do(func() {
		if p := os.Getenv("SCEPCTL_BIN"); p != "" {
			scepctlPath = p
			return
		}
		dir, err := os.MkdirTemp("", "scepctl")
		if err != nil {
			scepctlErr = err
			return
		}
		scepctlDir, scepctlPath = dir, filepath.Join(dir, "scepctl")
		out, err := exec.Command("go", "build", "-o", scepctlPath, "github.com/scep-operator/scep-operator/cmd/scepctl").CombinedOutput()
		if err != nil {
			scepctlErr = errors.New(string(out))
		}
	})
	if scepctlErr != nil {
		t.Fatalf("building scepctl: %v", scepctlErr)
	}
	cmd := exec.Command(scepctlPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func readPEMCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func TestScepctlMicroMDM(t *testing.T) {
	srv := micromdm.Start(t, micromdm.Options{Challenge: "s3cret-pw"})
	dir := t.TempDir()
	fp := scep.FingerprintOf(srv.CA, crypto.SHA256).Hex()

	t.Run("caps", func(t *testing.T) {
		code, out, errOut := scepctl(t, "caps", "--url", srv.URL)
		if code != 0 || !strings.Contains(out, "POSTPKIOperation\n") || !strings.Contains(out, "AES\n") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})

	t.Run("cacert with pin and --out", func(t *testing.T) {
		out := filepath.Join(dir, "ca.pem")
		code, stdout, errOut := scepctl(t, "cacert", "--url", srv.URL, "--fingerprint", strings.ToLower(strings.ReplaceAll(fp, ":", " ")), "--out", out)
		if code != 0 || !strings.Contains(stdout, "role:     CA") || !strings.Contains(stdout, fp) || !strings.Contains(stdout, "MD5:") {
			t.Fatalf("exit %d\n%s%s", code, stdout, errOut)
		}
		if certs := readPEMCerts(t, out); len(certs) != 1 || !certs[0].Equal(srv.CA) {
			t.Errorf("--out holds %d certificates", len(certs))
		}
	})

	t.Run("enroll with a challenge file and all SAN types", func(t *testing.T) {
		chal := filepath.Join(dir, "challenge")
		if err := os.WriteFile(chal, []byte("s3cret-pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		key, out := filepath.Join(dir, "app.key"), filepath.Join(dir, "app.pem")
		code, stdout, errOut := scepctl(t, "enroll", "--url", srv.URL, "--subject", "CN=app.corp.example,O=Corp",
			"--dns", "app.corp.example", "--dns", "www.corp.example", "--email", "app@corp.example",
			"--uri", "spiffe://corp.example/app", "--upn", "app@corp.example", "--key-usage", "both",
			"--key", key, "--key-size", "3072", "--challenge-file", chal, "--fingerprint", fp, "--out", out)
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, stdout, errOut)
		}
		if strings.Contains(stdout+errOut, "s3cret-pw") {
			t.Errorf("the challenge was printed")
		}
		st, err := os.Stat(key)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("key file mode = %v, %v", st.Mode(), err)
		}
		certs := readPEMCerts(t, out)
		if len(certs) == 0 || certs[0].Subject.CommonName != "app.corp.example" || !reflect.DeepEqual(certs[0].DNSNames, []string{"app.corp.example", "www.corp.example"}) {
			t.Fatalf("issued %v", certs)
		}
		if err := certs[0].CheckSignatureFrom(srv.CA); err != nil {
			t.Error(err)
		}
		// The existing key is reused on a second run.
		out2 := filepath.Join(dir, "app2.pem")
		if code, _, errOut := scepctl(t, "enroll", "--url", srv.URL, "--subject", "CN=app.corp.example", "--key", key, "--challenge", "s3cret-pw", "--out", out2); code != 0 {
			t.Fatalf("second enroll: %s", errOut)
		}
		if !readPEMCerts(t, out2)[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(certs[0].PublicKey) {
			t.Errorf("--key was not reused")
		}

		t.Run("renew", func(t *testing.T) {
			out3 := filepath.Join(dir, "app3.pem")
			code, stdout, errOut := scepctl(t, "enroll", "--url", srv.URL, "--subject", "CN=app.corp.example", "--key", key, "--challenge", "s3cret-pw", "--renew", "--cert", out, "--out", out3)
			if code != 0 || srv.PKIMessages("RenewalReq") != 1 {
				t.Fatalf("exit %d, RenewalReq seen %d\n%s%s", code, srv.PKIMessages("RenewalReq"), stdout, errOut)
			}
		})
	})

	t.Run("wrong challenge: exit 1 with the server's reason, challenge not shown", func(t *testing.T) {
		code, stdout, errOut := scepctl(t, "enroll", "--url", srv.URL, "--subject", "CN=x", "--challenge", "not-the-pw", "--out", filepath.Join(dir, "x.pem"))
		if code != 1 || !strings.Contains(errOut, "badRequest") || strings.Contains(stdout+errOut, "not-the-pw") {
			t.Fatalf("exit %d\n%s%s", code, stdout, errOut)
		}
		if _, err := os.Stat(filepath.Join(dir, "x.pem")); err == nil {
			t.Errorf("a certificate file was written on failure")
		}
	})

	t.Run("fingerprint mismatch: exit 1 before any PKIOperation", func(t *testing.T) {
		before := srv.Requests("PKIOperation")
		code, _, errOut := scepctl(t, "enroll", "--url", srv.URL, "--subject", "CN=x", "--fingerprint", strings.Repeat("ab", 20), "--out", filepath.Join(dir, "y.pem"))
		if code != 1 || !strings.Contains(errOut, "fingerprint mismatch") || srv.Requests("PKIOperation") != before {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})

	t.Run("usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{},
			{"nope"},
			{"caps"},
			{"enroll", "--url", srv.URL, "--out", "x"},
			{"enroll", "--url", srv.URL, "--subject", "CN=x", "--out", "x", "--key-size", "1000"},
			{"enroll", "--url", srv.URL, "--subject", "CN=x", "--out", "x", "--challenge", "a", "--challenge-file", "b"},
			{"cacert", "--url", srv.URL, "--fingerprint", "xyz"},
			{"caps", "--url", "ftp://x"},
		} {
			if code, _, errOut := scepctl(t, args...); code != 2 {
				t.Errorf("scepctl %v: exit %d, want 2 (%s)", args, code, errOut)
			}
		}
	})
}

func TestScepctlPendingAndStepCA(t *testing.T) {
	t.Run("PENDING polled until issued", func(t *testing.T) {
		srv := scepserver.Start(t, scepserver.Behavior{Pending: 2})
		out := filepath.Join(t.TempDir(), "p.pem")
		code, stdout, errOut := scepctl(t, "enroll", "--url", srv.URL, "--subject", "CN=pending", "--retry-interval", "50ms", "--max-attempts", "5", "--out", out)
		if code != 0 || strings.Count(errOut, "PENDING") != 2 || srv.PKIMessages("PKCSReq") != 1 || srv.PKIMessages("CertPoll") != 2 {
			t.Fatalf("exit %d, PKCSReq %d, CertPoll %d\n%s%s", code, srv.PKIMessages("PKCSReq"), srv.PKIMessages("CertPoll"), stdout, errOut)
		}
	})
	t.Run("PENDING forever gives up after --max-attempts", func(t *testing.T) {
		srv := scepserver.Start(t, scepserver.Behavior{PendingForever: true})
		code, _, errOut := scepctl(t, "enroll", "--url", srv.URL, "--subject", "CN=pending", "--retry-interval", "20ms", "--max-attempts", "3", "--out", filepath.Join(t.TempDir(), "p.pem"))
		if code != 1 || !strings.Contains(errOut, "still PENDING after 3 attempts") || srv.PKIMessages("CertPoll") != 2 {
			t.Fatalf("exit %d, CertPoll %d: %s", code, srv.PKIMessages("CertPoll"), errOut)
		}
	})
	t.Run("step-ca over https with --ca-bundle", func(t *testing.T) {
		srv := stepca.Start(t, stepca.Options{Challenge: "pw"})
		dir := t.TempDir()
		bundle := filepath.Join(dir, "root.pem")
		if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Root.Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "s.pem")
		code, stdout, errOut := scepctl(t, "enroll", "--url", srv.URL, "--ca-bundle", bundle, "--subject", "CN=step.example", "--dns", "step.example", "--challenge", "pw", "--out", out)
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, stdout, errOut)
		}
		if certs := readPEMCerts(t, out); len(certs) != 2 || !certs[1].Equal(srv.Intermediate) {
			t.Errorf("chain of %d certificates", len(certs))
		}
		if code, _, _ := scepctl(t, "caps", "--url", srv.URL); code != 1 {
			t.Errorf("https without --ca-bundle: exit %d, want 1", code)
		}
	})
}
