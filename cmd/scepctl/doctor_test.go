package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/ndes"
	"github.com/scep-operator/scep-operator/test/refusing"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stepca"
)

// doctorRun runs scepctl doctor and fails t when the exit code is not want
// or a line the test expects is missing: each want is a regular expression
// matched against one line of the report (e.g. `^FAIL +TLS name +.*other`).
func doctorRun(t *testing.T, wantCode int, args []string, want ...string) string {
	t.Helper()
	code, stdout, stderr := runCLI(append([]string{"doctor", "--timeout", "5s"}, args...)...)
	if code != wantCode {
		t.Errorf("exit code %d; want %d\nstdout:\n%s\nstderr:\n%s", code, wantCode, stdout, stderr)
	}
	for _, w := range want {
		if !regexp.MustCompile(`(?m)` + w).MatchString(stdout) {
			t.Errorf("the report lacks a line matching %q:\n%s", w, stdout)
		}
	}
	return stdout + stderr
}

// TestDoctorMicroMDM checks a MicroMDM server with a challenge: pinned by
// each fingerprint format, enrolled with the challenge, and the cause named
// when the challenge is missing.
func TestDoctorMicroMDM(t *testing.T) {
	const challenge = "micromdm-S3cret"
	srv := micromdm.Start(t, micromdm.Options{Challenge: challenge})
	pw := writeFile(t, "challenge", challenge)
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA1, crypto.MD5} {
		fp := scep.FingerprintOf(srv.CA, h).Hex()
		out := doctorRun(t, 0, []string{"--url", srv.URL, "--fingerprint", fp, "--challenge-file", pw, "--enroll"},
			`^OK +DNS +127\.0\.0\.1 is an address`,
			`^OK +TCP +connected to 127\.0\.0\.1:`,
			`^SKIP +TLS +plain http`,
			`^OK +GetCACaps +.*POSTPKIOperation`,
			`^OK +CA expiry +CA .*valid until`,
			`^OK +pin +`+regexp.QuoteMeta(h.String())+` fingerprint `+regexp.QuoteMeta(fp)+` matches CA`,
			`^OK +POST/GET +PKIOperation goes by POST`,
			`^OK +enrollment +issued "CN=scepctl-doctor"`,
			`every step passed`)
		if strings.Contains(out, challenge) {
			t.Errorf("the report shows the challenge password:\n%s", out)
		}
	}
	doctorRun(t, 1, []string{"--url", srv.URL, "--enroll"},
		`^WARN +pin +no CA pin over plain http`,
		`^FAIL +enrollment +SCEP server refused the request: badRequest`,
		`fix: the request carried no challenge password`)
}

// TestDoctorStepCA checks step-ca over https: the chain with and without
// its root, an EC intermediate beside the RSA decrypter, and an enrollment.
func TestDoctorStepCA(t *testing.T) {
	srv := stepca.Start(t, stepca.Options{Challenge: "step-S3cret"})
	root := writeFile(t, "root.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Root.Raw})))
	pw := writeFile(t, "challenge", srv.Challenge)
	doctorRun(t, 0, []string{"--url", srv.URL, "--ca-bundle", root, "--challenge-file", pw, "--enroll"},
		`^OK +TLS chain +.* chains to --ca-bundle`,
		`^OK +TLS name +the certificate names 127\.0\.0\.1`,
		`^OK +recipient +requests are encrypted to .* \(RSA 2048\)`,
		`^OK +enrollment +issued`)
	doctorRun(t, 1, []string{"--url", srv.URL},
		`^FAIL +TLS chain +.* does not chain to the system roots`,
		`fix: give the CA that issued the server's certificate`)
	doctorRun(t, 0, []string{"--url", srv.URL, "--insecure"},
		`^WARN +TLS chain +`,
		`^WARN +TLS +verification is turned off \(--insecure\)`,
		`^OK +GetCACert`)
}

// TestDoctorNDES checks the NDES emulator: RA certificates, a password from
// the admin page (never printed) used by the test enrollment, a refused
// account, and old NDES's GET-only transport over IIS's query limit.
func TestDoctorNDES(t *testing.T) {
	srv := ndes.Start(t, ndes.Options{})
	account := writeFile(t, "account", ndes.DefaultPassword)
	wrong := writeFile(t, "wrong", "not-the-password")
	args := []string{"--url", srv.URL, "--ndes-admin-url", srv.AdminURL, "--ndes-username", ndes.DefaultDomain + `\` + ndes.DefaultUsername, "--ndes-allow-plain-http"}
	out := doctorRun(t, 0, append(args, "--ndes-password-file", account, "--enroll"),
		`^OK +CA expiry +RASigning `,
		`^OK +CA expiry +RAEncryption `,
		`^OK +recipient +requests are encrypted to .*RA encryption`,
		`^OK +NDES admin +.* issued a challenge password \(not shown\); the test enrollment uses it`,
		`^OK +enrollment +issued`)
	for _, secret := range append(srv.IssuedPasswords(), ndes.DefaultPassword) {
		if strings.Contains(out, secret) {
			t.Errorf("the report shows a password:\n%s", out)
		}
	}
	doctorRun(t, 1, append(args, "--ndes-password-file", wrong),
		`^FAIL +NDES admin +.*: NDES refused user .*\(HTTP 401\)`,
		`fix: check the account`)

	srv.Set(func(o *ndes.Options) { o.GetOnly = true })
	doctorRun(t, 1, append(args, "--ndes-password-file", account),
		`^FAIL +POST/GET +the server takes GET only, and a request with an RSA-2048 key needs a [0-9]+-byte query, over the 2048 bytes`,
		`fix: make the server announce POSTPKIOperation`)
}

// TestDoctorFaults runs the doctor against the misbehaving server's faults
// (and TLS fronts for it): each names its cause in its own step.
func TestDoctorFaults(t *testing.T) {
	bad := scepserver.BadAlg
	for _, c := range []struct {
		name     string
		behavior scepserver.Behavior
		args     []string
		code     int
		want     []string
	}{
		// Old NDES: without GetCACaps, only GET may be used, and a request
		// does not fit IIS's default query limit (the probe is refused).
		{"no GetCACaps (old NDES)", scepserver.Behavior{NoCaps: true, MaxQueryBytes: 2048}, nil, 1,
			[]string{`^WARN +GetCACaps +answered HTTP 500: assuming the minimal set`, `^FAIL +POST/GET +the server takes GET only`}},
		{"weak algorithms", scepserver.Behavior{Caps: []string{"POSTPKIOperation", "DES3"}}, nil, 0,
			[]string{`^WARN +algorithms +the server offers nothing better than 3DES \(deprecated\) and SHA-1`}},
		{"GetCACert HTTP 500", scepserver.Behavior{Status: 500, FaultOperations: []string{scepserver.OpGetCACert}}, nil, 1,
			[]string{`^FAIL +GetCACert +SCEP GetCACert answered HTTP 500`, `fix: the server failed: read its log`}},
		{"GetCACert login page", scepserver.Behavior{HTMLStatus200: true, FaultOperations: []string{scepserver.OpGetCACert}}, nil, 1,
			[]string{`^FAIL +GetCACert +SCEP GetCACert answer is not a SCEP message: an HTML page`, `fix: something other than a SCEP server answered`}},
		{"GetCACert garbage", scepserver.Behavior{Garbage: true, FaultOperations: []string{scepserver.OpGetCACert}}, nil, 1,
			[]string{`^FAIL +GetCACert +SCEP GetCACert answer is not a SCEP message`}},
		{"GetCACert truncated", scepserver.Behavior{TruncatedDER: true, FaultOperations: []string{scepserver.OpGetCACert}}, nil, 1,
			[]string{`^FAIL +GetCACert +SCEP GetCACert answer is not a SCEP message`}},
		{"slow server", scepserver.Behavior{Delay: 10 * time.Second}, []string{"--timeout", "1s"}, 1,
			[]string{`^FAIL +GetCACaps +`, `fix: the server did not answer within 1s`}},
		{"pin mismatch", scepserver.Behavior{}, []string{"--fingerprint", strings.Repeat("ab", 32)}, 1,
			[]string{`^FAIL +pin +SHA-256 AB:AB:.* \(--fingerprint\) matches no certificate`, `^ +SHA-1 +[0-9A-F:]{59}$`, `^ +MD5 +[0-9A-F:]{47}$`, `fix: if the CA was renewed`}},
		{"GET only over IIS's limit", scepserver.Behavior{GetOnly: true, MaxQueryBytes: 2048}, nil, 1,
			[]string{`^FAIL +POST/GET +the server takes GET only`}},
		{"refusal with failInfo", scepserver.Behavior{FailInfo: &bad}, []string{"--enroll"}, 1,
			[]string{`^FAIL +enrollment +SCEP server refused the request: badAlg`}},
		{"pending approval", scepserver.Behavior{PendingForever: true}, []string{"--enroll"}, 0,
			[]string{`^WARN +enrollment +PENDING \(transaction [^)]+\): the server holds requests for a CA manager's approval`}},
		{"forged reply signature", scepserver.Behavior{BadSignature: true}, []string{"--enroll"}, 1,
			[]string{`^FAIL +enrollment +invalid SCEP reply`, `fix: the reply broke the protocol`}},
		{"wrong recipient nonce", scepserver.Behavior{WrongRecipientNonce: true}, []string{"--enroll"}, 1,
			[]string{`^FAIL +enrollment +invalid SCEP reply`}},
		{"challenge required", scepserver.Behavior{Challenge: "pw"}, []string{"--enroll"}, 1,
			[]string{`fix: the request carried no challenge password`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := scepserver.Start(t, c.behavior)
			doctorRun(t, c.code, append([]string{"--url", srv.URL}, c.args...), c.want...)
		})
	}

	t.Run("nothing listens", func(t *testing.T) {
		// A port that refuses and stays taken: a port that was free a
		// moment ago may have a listener of another test by now.
		doctorRun(t, 1, []string{"--url", "http://" + refusing.Address(t) + "/scep"},
			`^FAIL +TCP +no address accepts a connection on port`, `fix: check that the server listens`, `^SKIP +the remaining steps`)
	})
	t.Run("metadata address", func(t *testing.T) {
		doctorRun(t, 1, []string{"--url", "http://169.254.169.254/scep"},
			`^FAIL +egress +the operator's egress policy refuses connecting to 169\.254\.169\.254`)
	})
	t.Run("denied by the operator's flags", func(t *testing.T) {
		srv := scepserver.Start(t, scepserver.Behavior{})
		doctorRun(t, 1, []string{"--url", srv.URL, "--egress-deny-cidrs", "127.0.0.0/8"},
			`^FAIL +egress +.*127\.0\.0\.0/8 of --egress-deny-cidrs`)
	})
	t.Run("not SCEP at this path", func(t *testing.T) {
		web := httptest.NewServer(http.NotFoundHandler())
		t.Cleanup(web.Close)
		doctorRun(t, 1, []string{"--url", web.URL + "/wrong"},
			`^WARN +GetCACaps +answered HTTP 404`, `^FAIL +GetCACert +SCEP GetCACert answered HTTP 404`, `fix: check the URL's path`)
	})

	// TLS: a front with a certificate of the test's own CA.
	ca, caKey := testCA(t)
	bundle := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})))
	now := time.Now()
	for _, c := range []struct {
		name      string
		names     []string
		notBefore time.Time
		notAfter  time.Time
		want      []string
	}{
		{"name mismatch", []string{"scep.other.example"}, now.Add(-time.Hour), now.Add(90 * 24 * time.Hour),
			[]string{`^OK +TLS chain +`, `^FAIL +TLS name +the server's certificate is for scep\.other\.example, not 127\.0\.0\.1`, `fix: use a URL with one of the certificate's names`}},
		{"expired", []string{"127.0.0.1"}, now.Add(-48 * time.Hour), now.Add(-time.Hour),
			[]string{`^OK +TLS chain +`, `^FAIL +TLS expiry +the server's certificate expired on`, `fix: renew the web server's TLS certificate`}},
		{"expiring", []string{"127.0.0.1"}, now.Add(-time.Hour), now.Add(10 * 24 * time.Hour),
			[]string{`^WARN +TLS expiry +the server's certificate expires on .*\(in [0-9]+ days\)`, `^OK +TLS name`}},
	} {
		t.Run("TLS "+c.name, func(t *testing.T) {
			srv := scepserver.Start(t, scepserver.Behavior{})
			url := tlsFront(t, srv, ca, caKey, c.names, c.notBefore, c.notAfter)
			code := 1
			if strings.HasPrefix(c.name, "expiring") {
				code = 0
			}
			doctorRun(t, code, []string{"--url", url, "--ca-bundle", bundle}, c.want...)
		})
	}
}

// testCA makes a CA for TLS fronts.
func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "doctor test TLS CA"},
		NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// tlsFront serves h over TLS with a certificate of ca for names (DNS names
// or IP addresses), valid in the given window, and returns its SCEP URL.
func tlsFront(t *testing.T, h http.Handler, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string, notBefore, notAfter time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL + "/scep"
}

// TestDoctorUsage checks the flags that do not go together.
func TestDoctorUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"nothing to check":        {},
		"profile and url":         {"--profile", "corp", "--url", "http://127.0.0.1/scep"},
		"not a URL":               {"--url", "ftp://x/scep"},
		"namespace without name":  {"--profile", "team-a/"},
		"challenge and NDES page": {"--url", "http://127.0.0.1/scep", "--challenge", "x", "--ndes-admin-url", "http://127.0.0.1/", "--ndes-username", "u", "--ndes-password-file", filepath.Join(t.TempDir(), "none")},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, stderr := runCLI(append([]string{"doctor", "--kubeconfig", filepath.Join(t.TempDir(), "none")}, args...)...); code != 2 {
				t.Errorf("exit code %d; want 2 (usage): %s", code, stderr)
			}
		})
	}
}
