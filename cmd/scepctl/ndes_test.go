package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/scep-operator/scep-operator/test/scepserver"
)

const (
	ndesUser     = `CORP\svc-scep`
	ndesPassword = "Acc0unt-S3cret!"
)

// fakeAdminPage is NDES's mscep_admin page behind Basic authentication over
// TLS: a fresh password per visit, in BOM-less UTF-16LE as NDES serves it.
type fakeAdminPage struct {
	*httptest.Server
	caBundle string // PEM of the server's certificate, for --ca-bundle

	mu        sync.Mutex
	issued    []string
	cacheFull bool
	// onIssue, if set, learns each password as it is handed out.
	onIssue func(pw string)
}

func startAdminPage(t *testing.T) *fakeAdminPage {
	t.Helper()
	p := &fakeAdminPage{}
	p.Server = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	p.caBundle = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p.caBundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *fakeAdminPage) adminURL() string { return p.URL + "/certsrv/mscep_admin/" }

func (p *fakeAdminPage) serve(w http.ResponseWriter, r *http.Request) {
	if u, pw, ok := r.BasicAuth(); !ok || u != ndesUser || pw != ndesPassword {
		w.Header().Set("WWW-Authenticate", `Basic realm="ndes"`)
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, "<html><head><title>401 - Unauthorized: Access is denied due to invalid credentials.</title></head></html>")
		return
	}
	p.mu.Lock()
	var page string
	if p.cacheFull {
		page = "<HTML><Body><P> The password cache is full. </Body></HTML>"
	} else {
		b := make([]byte, 8)
		rand.Read(b)
		pw := strings.ToUpper(hex.EncodeToString(b))
		p.issued = append(p.issued, pw)
		if p.onIssue != nil {
			p.onIssue(pw)
		}
		page = `<HTML><Body><P> The thumbprint (hash value) for the CA certificate is: <B> 0A1B2C3D 4E5F6071 </B>
<P> The enrollment challenge password is: <B> ` + pw + ` </B>
<P> This password can be used only once and will expire within 60 minutes.</Body></HTML>`
	}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "text/html")
	var buf bytes.Buffer
	for _, r := range page { // ASCII only
		buf.Write([]byte{byte(r), 0})
	}
	w.Write(buf.Bytes())
}

func (p *fakeAdminPage) passwords() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.issued...)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestNDESPassword(t *testing.T) {
	page := startAdminPage(t)
	good := writeFile(t, "pw", ndesPassword+"\n")
	const wrongPassword = "Wr0ng-Passw0rd"
	wrong := writeFile(t, "wrong", wrongPassword)

	t.Run("prints the password and only it", func(t *testing.T) {
		code, stdout, stderr := runCLI("ndes-password", "--url", page.adminURL(), "--username", ndesUser, "--password-file", good, "--auth", "basic", "--ca-bundle", page.caBundle)
		issued := page.passwords()
		if code != 0 || len(issued) == 0 {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		if want := issued[len(issued)-1] + "\n"; stdout != want {
			t.Errorf("stdout = %q, want %q", stdout, want)
		}
		if strings.Contains(stderr, ndesPassword) {
			t.Errorf("stderr shows the account's password: %s", stderr)
		}
	})

	t.Run("each run a fresh password", func(t *testing.T) {
		_, first, _ := runCLI("ndes-password", "--url", page.adminURL(), "--username", ndesUser, "--password-file", good, "--auth", "Basic", "--ca-bundle", page.caBundle)
		_, second, _ := runCLI("ndes-password", "--url", page.adminURL(), "--username", ndesUser, "--password-file", good, "--auth", "Basic", "--ca-bundle", page.caBundle)
		if first == "" || first == second {
			t.Errorf("got %q then %q", first, second)
		}
	})

	t.Run("wrong credentials name the user, never the password", func(t *testing.T) {
		code, stdout, stderr := runCLI("ndes-password", "--url", page.adminURL(), "--username", ndesUser, "--password-file", wrong, "--auth", "basic", "--ca-bundle", page.caBundle, "-v")
		if code != 1 || stdout != "" {
			t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, stdout)
		}
		if !strings.Contains(stderr, ndesUser) || !strings.Contains(stderr, "401") {
			t.Errorf("stderr does not name the user and the refusal: %s", stderr)
		}
		if strings.Contains(stderr, wrongPassword) || strings.Contains(stderr, ndesPassword) {
			t.Errorf("stderr shows a password: %s", stderr)
		}
	})

	t.Run("cache full says what to do", func(t *testing.T) {
		page.mu.Lock()
		page.cacheFull = true
		page.mu.Unlock()
		defer func() { page.mu.Lock(); page.cacheFull = false; page.mu.Unlock() }()
		code, stdout, stderr := runCLI("ndes-password", "--url", page.adminURL(), "--username", ndesUser, "--password-file", good, "--auth", "basic", "--ca-bundle", page.caBundle)
		if code != 1 || stdout != "" || !strings.Contains(stderr, "password cache is full") || !strings.Contains(stderr, "wait") || !strings.Contains(stderr, "PasswordMax") {
			t.Fatalf("exit %d, stdout %q\n%s", code, stdout, stderr)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{name: "no username", args: []string{"--url", page.adminURL(), "--password-file", good}},
		{name: "no password file", args: []string{"--url", page.adminURL(), "--username", ndesUser}},
		{name: "unknown auth", args: []string{"--url", page.adminURL(), "--username", ndesUser, "--password-file", good, "--auth", "kerberos"}},
		{name: "Basic over plain http", args: []string{"--url", "http://ndes.corp/certsrv/mscep_admin/", "--username", ndesUser, "--password-file", good, "--auth", "basic"}},
		{name: "NTLM over plain http", args: []string{"--url", "http://ndes.corp/certsrv/mscep_admin/", "--username", ndesUser, "--password-file", good}, says: "--allow-plain-http"},
		{name: "stray argument", args: []string{"--url", page.adminURL(), "--username", ndesUser, "--password-file", good, "extra"}},
	} {
		t.Run("usage: "+tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append([]string{"ndes-password"}, tc.args...)...)
			if code != 2 || stdout != "" || strings.Contains(stderr, ndesPassword) || !strings.Contains(stderr, tc.says) {
				t.Fatalf("exit %d, stdout %q\n%s", code, stdout, stderr)
			}
		})
	}
}

func TestEnrollNDESUsage(t *testing.T) {
	page := startAdminPage(t)
	dir := t.TempDir()
	pwFile := writeFile(t, "pw", ndesPassword)
	chal := writeFile(t, "chal", "static")
	base := []string{"enroll", "--url", "http://127.0.0.1:1/scep", "--subject", "CN=x", "--out", filepath.Join(dir, "x.pem")}
	ndesArgs := []string{"--ndes-admin-url", page.adminURL(), "--ndes-username", ndesUser, "--ndes-password-file", pwFile, "--ndes-auth", "basic"}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{name: "with --challenge", args: append([]string{"--challenge", "static"}, ndesArgs...)},
		{name: "with --challenge-file", args: append([]string{"--challenge-file", chal}, ndesArgs...)},
		{name: "username without admin URL", args: []string{"--ndes-username", ndesUser, "--ndes-password-file", pwFile}},
		{name: "admin URL without password file", args: []string{"--ndes-admin-url", page.adminURL(), "--ndes-username", ndesUser}},
		{name: "unknown auth", args: append(append([]string(nil), ndesArgs[:6]...), "--ndes-auth", "digest")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append(append([]string(nil), base...), tc.args...)...)
			if code != 2 {
				t.Fatalf("exit %d; want 2\n%s%s", code, stdout, stderr)
			}
		})
	}
	if n := len(page.passwords()); n != 0 {
		t.Errorf("usage errors fetched %d passwords", n)
	}
}

// scepBehindFaults serves srv's SCEP endpoint, answering the first failures
// PKIOperations with HTTP 500 before passing them on. It stands in front of
// scepserver instead of using its FaultTimes, which every Set (one per
// password here) would re-arm.
func scepBehindFaults(t *testing.T, srv *scepserver.Server, failures int32) (string, *atomic.Int32) {
	t.Helper()
	var failed atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("operation") == "PKIOperation" && failed.Load() < failures {
			failed.Add(1)
			http.Error(w, "The server encountered an internal error", http.StatusInternalServerError)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front.URL, &failed
}

func TestEnrollNDES(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int32
	}{
		{name: "first attempt"},
		{name: "retry fetches a new password", failures: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := scepserver.Start(t, scepserver.Behavior{})
			page := startAdminPage(t)
			// Only the newest password is accepted: an old one, reused, fails.
			page.mu.Lock()
			page.onIssue = func(pw string) { srv.Set(func(b *scepserver.Behavior) { b.Challenge = pw }) }
			page.mu.Unlock()
			url, failed := scepBehindFaults(t, srv, tc.failures)
			out := filepath.Join(t.TempDir(), "cert.pem")
			code, stdout, stderr := runCLI("enroll", "--url", url, "--subject", "CN=device.corp.example", "--out", out,
				"--retry-interval", "10ms", "--max-attempts", "3",
				"--ndes-admin-url", page.adminURL(), "--ndes-username", ndesUser, "--ndes-password-file", writeFile(t, "pw", ndesPassword),
				"--ndes-auth", "basic", "--ca-bundle", page.caBundle)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
			}
			issued := page.passwords()
			if len(issued) != int(tc.failures)+1 || failed.Load() != tc.failures {
				t.Fatalf("%d passwords fetched for %d failed attempts; want one per PKCSReq", len(issued), failed.Load())
			}
			var challenges []string
			for _, r := range srv.PKIRequests() {
				if r.MessageType == "PKCSReq" {
					challenges = append(challenges, r.ChallengePassword)
				}
			}
			if len(challenges) != 1 || challenges[0] != issued[len(issued)-1] {
				t.Errorf("PKCSReq challenges %q; want only the newest of %q", challenges, issued)
			}
			for _, secret := range append(issued, ndesPassword) {
				if strings.Contains(stdout+stderr, secret) {
					t.Errorf("output shows the secret %q:\n%s%s", secret, stdout, stderr)
				}
			}
			if _, err := os.Stat(out); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestServerExcerptOnTerminal: the operator's errors never quote a server,
// but scepctl runs on an admin's own terminal: after the error it prints
// the start of the answer, cleaned.
func TestServerExcerptOnTerminal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html><body><h1>Proxy says no</h1>\x1b[31m<p>upstream down</p></body></html>")
	}))
	defer srv.Close()
	code, _, stderr := runCLI("cacert", "--url", srv.URL+"/scep")
	if code != 1 || !strings.Contains(stderr, "HTTP 502") || !strings.Contains(stderr, `the answer starts with: "Proxy says no [31m upstream down"`) || strings.Contains(stderr, "\x1b") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
}
