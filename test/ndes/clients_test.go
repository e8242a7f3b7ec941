package ndes_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/scep-operator/scep-operator/test/ndes"
)

// SCEP clients neither this project nor MicroMDM wrote judge the emulator:
// certmonger's scep-submit and strongSwan's pki --scep, from Debian
// (hack/scep-clients.sh installs them). Their own bugs are worked around
// on their side, never in the emulator:
//
//   - certmonger sends PKIOperation with GET only, so the emulated IIS has
//     its maxQueryString raised as NDES deployments do (Microsoft's NDES
//     guidance sets 65534): a server setting, not an emulator change.
//   - strongSwan 5.9.8 reads GetCACaps one entry off: "AES" turns on its
//     DES3 flag, "SHA-384" its AES flag, "DES3" its SHA-256 flag (tried
//     here, one capability at a time). NDES 2016+ announces neither AES nor
//     SHA-384, so no pki flag makes it send anything. Its test reaches the
//     emulator through strongSwanCaps, a proxy that appends "AES" to the
//     GetCACaps answer and passes everything else through untouched; pki
//     then sends what NDES accepts, DES3 with SHA-256 (--cipher des3
//     --digest sha256).

// Where Debian installs them.
const (
	scepSubmitPath = "/usr/lib/certmonger/scep-submit"
	strongSwanPKI  = "pki"
)

// outsideClient returns the client's path. Missing, the test skips, or
// fails when CI is set: CI must run them (hack/scep-clients.sh, called by
// make test-deps, installs them as root).
func outsideClient(t *testing.T, name, path string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err == nil && name == "strongSwan" {
		// pki --scep needs the curl fetcher of libstrongswan-extra-plugins.
		if _, statErr := os.Stat("/usr/lib/ipsec/plugins/libstrongswan-curl.so"); statErr != nil {
			err = errors.New("libstrongswan-extra-plugins (the curl fetcher) is not installed")
		}
	}
	if err != nil {
		msg := name + " is not installed (hack/scep-clients.sh installs it): " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI is set, so it must run")
		}
		t.Skip(msg)
	}
	return p
}

// run runs a client with a deadline and returns its exit code, stdout and
// stderr.
func run(t *testing.T, timeout time.Duration, name string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit) && ctx.Err() == nil:
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	return 0, "", ""
}

func writePEM(t *testing.T, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// logServerOnFailure logs, when t fails, every pkiMessage the emulator
// received with its answer and why one was refused: a flake once had
// strongSwan's third CertPoll answered badMessageCheck.
func logServerOnFailure(t *testing.T, s *ndes.Server) {
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range s.SCEP.PKIRequests() {
				t.Logf("emulator: %s", r)
			}
		}
	})
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(b); block != nil {
		b = block.Bytes
	}
	crt, err := x509.ParseCertificate(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return crt
}

// TestStrongSwan: pki --scepca reads NDES's GetCACert (RA signing, RA
// encryption, CA), pki --scep enrols with a one-time password, is refused
// when it reuses it, and polls a PENDING request until a CA manager
// approves it.
func TestStrongSwan(t *testing.T) {
	pki := outsideClient(t, "strongSwan", strongSwanPKI)
	s := ndes.Start(t, ndes.Options{})
	logServerOnFailure(t, s)
	url := strongSwanCaps(t, s)
	dir := t.TempDir()

	code, out, errOut := run(t, time.Minute, pki, "--scepca", "--url", url, "--caout", filepath.Join(dir, "ca.pem"), "--raout", filepath.Join(dir, "ra.pem"), "--outform", "pem")
	if code != 0 {
		t.Fatalf("pki --scepca: exit %d\n%s%s", code, out, errOut)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.pem"))
	t.Logf("pki --scepca wrote %v", files)
	var ca, sign, enc string
	for _, f := range files {
		crt := readCert(t, f)
		switch {
		case crt.Equal(s.CA):
			ca = f
		case crt.Equal(s.RASign):
			sign = f
		case crt.Equal(s.RAEncrypt):
			enc = f
		}
	}
	if ca == "" || sign == "" || enc == "" {
		t.Fatalf("pki --scepca did not store the CA, RA signing and RA encryption certificates: %v\n%s", files, errOut)
	}

	key := writePEM(t, filepath.Join(dir, "key.pem"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(primesDescending(nextKey(t))))
	enroll := func(cn, password string) []string {
		return []string{"--scep", "--url", url, "--in", key, "--dn", "CN=" + cn + ", O=strongSwan", "--password", password,
			"--cacert-enc", enc, "--cacert-sig", sign, "--cacert", ca, "--cipher", "des3", "--digest", "sha256",
			"--interval", "1", "--maxpolltime", "60", "--outform", "pem"}
	}
	pw := s.IssuePassword()
	code, out, errOut = run(t, time.Minute, pki, enroll("strongswan-1", pw)...)
	if code != 0 {
		t.Fatalf("pki --scep: exit %d\n%s", code, errOut)
	}
	checkPEMIssued(t, s, out, "strongswan-1")

	code, _, errOut = run(t, time.Minute, pki, enroll("strongswan-2", pw)...)
	if code == 0 || s.Counters().PasswordsRefused != 1 {
		t.Errorf("reused password: exit %d, %d refused by the emulator\n%s", code, s.Counters().PasswordsRefused, errOut)
	}
	t.Logf("pki on the reused password: %s", lastLines(errOut, 3))

	s.Set(func(o *ndes.Options) { o.ManualApproval = true })
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pki, enroll("strongswan-3", s.IssuePassword())...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, time.Minute, "strongSwan's request to be pending and polled", func() bool {
		return len(s.PendingTransactions()) == 1 && s.Counters().CertPoll >= 1
	})
	s.ApproveAll()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pki --scep after approval: %v\n%s", err, stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("pki --scep did not finish after approval\n%s", stderr.String())
	}
	checkPEMIssued(t, s, stdout.String(), "strongswan-3")
}

// TestCertmonger: certmonger's scep-submit reads GetCACaps and GetCACert,
// sends a PKCSReq (built with smallstep's scep, as certmonger's daemon
// would build one) and reads the reply, whose signature it verifies with
// the RA signing certificate; the same password again is refused.
func TestCertmonger(t *testing.T) {
	submit := outsideClient(t, "certmonger", scepSubmitPath)
	s := ndes.Start(t, ndes.Options{MaxQueryBytes: 65534})
	logServerOnFailure(t, s)
	dir := t.TempDir()

	code, out, errOut := run(t, time.Minute, submit, "-u", s.URL, "-c")
	if code != 0 || !strings.Contains(out, "POSTPKIOperation") || strings.Contains(out, "AES") {
		t.Errorf("scep-submit -c: exit %d, %q\n%s", code, out, errOut)
	}
	code, out, errOut = run(t, time.Minute, submit, "-u", s.URL, "-C")
	if code != 0 {
		t.Fatalf("scep-submit -C: exit %d\n%s%s", code, out, errOut)
	}
	var got []*x509.Certificate
	for rest := []byte(out); ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		crt, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, crt)
	}
	// certmonger prints the RA certificate first, then the CA, then the
	// rest: it must have picked the signing RA and the CA out of NDES's
	// order.
	if len(got) != 3 || !got[1].Equal(s.CA) {
		t.Errorf("scep-submit -C printed %d certificates; want the RA, the CA, then one more\n%s", len(got), out)
	}
	t.Logf("scep-submit -C: RA %q, CA %q", got[0].Subject.CommonName, got[len(got)-1].Subject.CommonName)
	ra := writePEM(t, filepath.Join(dir, "ra.pem"), "CERTIFICATE", s.RASign.Raw)
	others := filepath.Join(dir, "others.pem")
	if err := os.WriteFile(others, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.CA.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.RAEncrypt.Raw})...), 0o600); err != nil {
		t.Fatal(err)
	}

	pw := s.IssuePassword()
	c := newSCEPClient(t, s, pw)
	msg := writePEM(t, filepath.Join(dir, "req.pem"), "PKCS7", c.pkcsReq(t).Raw)
	code, out, errOut = run(t, time.Minute, submit, "-u", s.URL, "-r", ra, "-I", others, "-p", msg)
	if code != 0 {
		t.Fatalf("scep-submit -p: exit %d\n%s%s", code, out, errOut)
	}
	crt := decryptEnvelope(t, out, c.signer, c.key)
	if crt.CheckSignatureFrom(s.CA) != nil || !crt.PublicKey.(*rsa.PublicKey).Equal(&c.key.PublicKey) {
		t.Errorf("scep-submit's certificate is not the CA's for our key: %s", crt.Subject)
	}

	again := newSCEPClient(t, s, pw)
	msg = writePEM(t, filepath.Join(dir, "again.pem"), "PKCS7", again.pkcsReq(t).Raw)
	code, out, errOut = run(t, time.Minute, submit, "-u", s.URL, "-r", ra, "-I", others, "-p", msg)
	if code != 2 || s.Counters().PasswordsRefused != 1 {
		t.Errorf("reused password: exit %d (want 2, rejected), %d refused by the emulator\n%s%s", code, s.Counters().PasswordsRefused, out, errOut)
	}
	t.Logf("scep-submit on the reused password: %s", lastLines(out+errOut, 3))
}

// primesDescending returns key with prime1 > prime2, as OpenSSL and
// strongSwan's own pki --gen write RSA keys; Go's rsa.GenerateKey leaves
// them in random order. Debian's pki does RSA with its gcrypt plugin
// (loaded before gmp), which swaps prime1 and prime2 on load because
// libgcrypt's CRT expects p < q, without checking their order. With
// p > q, libgcrypt's CRT step h = u*(m2-m1) mod q adds q only once, so
// when m1-m2 > q the result comes out negative; its own check (s^e = m)
// passes, but the signature or plaintext is serialized without its sign,
// i.e. as n-s. About (p-q)^2/2pq of private-key operations (0.3% on
// average for a Go key, 2% for a skewed one) then send a signature no
// verifier accepts (the emulator answers badMessageCheck, as NDES would)
// or fail to decrypt the reply ("RSA decryption failed: Encoding problem").
func primesDescending(key *rsa.PrivateKey) *rsa.PrivateKey {
	if len(key.Primes) != 2 || key.Primes[0].Cmp(key.Primes[1]) > 0 {
		return key
	}
	k := &rsa.PrivateKey{PublicKey: key.PublicKey, D: key.D, Primes: []*big.Int{key.Primes[1], key.Primes[0]}}
	k.Precompute()
	return k
}

// strongSwanCaps is the emulator behind a proxy that appends "AES" to its
// GetCACaps answer, the one thing strongSwan 5.9.8 needs to read the DES3
// NDES announces (see the top of this file); it returns the proxy's SCEP
// URL.
func strongSwanCaps(t *testing.T, s *ndes.Server) string {
	t.Helper()
	target, err := neturl.Parse(s.HTTP.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Query().Get("operation") != "GetCACaps" || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		body = append(body, "\nAES"...)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL + strings.TrimPrefix(s.URL, s.HTTP.URL)
}

// decryptEnvelope opens the pkcsPKIEnvelope scep-submit prints and returns
// the issued certificate.
func decryptEnvelope(t *testing.T, out string, signer *x509.Certificate, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(out))
	if block == nil {
		t.Fatalf("no PEM in %q", out)
	}
	env, err := pkcs7.Parse(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := env.Decrypt(signer, key)
	if err != nil {
		t.Fatal(err)
	}
	deg, err := pkcs7.Parse(plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(deg.Certificates) == 0 {
		t.Fatal("no certificate in the envelope")
	}
	return deg.Certificates[0]
}

// checkPEMIssued checks a PEM certificate is the CA's, for cn.
func checkPEMIssued(t *testing.T, s *ndes.Server, out, cn string) {
	t.Helper()
	block, _ := pem.Decode([]byte(out))
	if block == nil {
		t.Fatalf("no certificate in %q", out)
	}
	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if crt.CheckSignatureFrom(s.CA) != nil || crt.Subject.CommonName != cn {
		t.Errorf("issued %s, not by the CA for %s", crt.Subject, cn)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " / ")
}
