// Package stepca starts a real step-ca (github.com/smallstep/certificates)
// with a SCEP provisioner on loopback, for tests that need a SCEP peer other
// than their own code.
//
// It needs neither the step CLI nor the network: the PKI (an EC P-256 root, an
// EC P-256 or RSA intermediate and an RSA SCEP decrypter certificate issued by
// the intermediate) is generated with crypto/x509 in a temporary directory,
// together with a ca.json, and the step-ca binary built by hack/step-ca.sh
// (`make step-ca`) is run as a subprocess. step-ca mints its own HTTPS
// certificate for 127.0.0.1 and localhost from the intermediate at start-up,
// so clients only need to trust Server.Root.
package stepca

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scep-operator/scep-operator/test/freeport"
)

// RootModule is the module path of the repository whose bin/ directory holds
// the step-ca binary; Start finds the repository root by walking up from the
// working directory to the go.mod that declares it.
const RootModule = "github.com/scep-operator/scep-operator"

// BinEnv names the environment variable that, when set, gives the path of the
// step-ca binary and overrides <repo>/bin/step-ca.
const BinEnv = "STEPCA_BIN"

// Content encryption algorithms that step-ca can use for the envelope of its
// CertRep replies (Options.EncryptionAlgorithmIdentifier). They are the
// numeric identifiers of github.com/smallstep/pkcs7. step-ca picks the
// algorithm from its configuration alone, whatever the client sent.
const (
	// EncryptDESCBC is DES-CBC, step-ca's default.
	EncryptDESCBC = 0
	// EncryptAES128CBC is AES-128-CBC.
	EncryptAES128CBC = 1
	// EncryptAES256CBC is AES-256-CBC.
	EncryptAES256CBC = 2
	// EncryptAES128GCM is AES-128-GCM.
	EncryptAES128GCM = 3
	// EncryptAES256GCM is AES-256-GCM.
	EncryptAES256GCM = 4
)

// Options configures the step-ca instance and its single SCEP provisioner.
// The zero value is a usable configuration: provisioner "scep", no challenge,
// EC intermediate, RSA decrypter, step-ca's default capabilities.
type Options struct {
	// Provisioner is the SCEP provisioner's name, the last element of the
	// SCEP URL. Empty means "scep".
	Provisioner string

	// Challenge is the static challenge password the provisioner requires in
	// the CSR's challengePassword attribute. Empty means no challenge.
	Challenge string

	// RSAIntermediate makes the intermediate CA key RSA 2048 instead of
	// EC P-256 (step-ca's own default, which is what real deployments made
	// with `step ca init` have). With an RSA intermediate, step-ca can also
	// decrypt requests enveloped to the intermediate certificate.
	RSAIntermediate bool

	// NoDecrypter leaves the provisioner without its own decrypter
	// certificate and key, so that step-ca uses the intermediate for SCEP
	// (GetCACert then returns only the CA chain). It requires RSAIntermediate.
	NoDecrypter bool

	// IncludeRoot makes GetCACert return the root after the intermediate.
	IncludeRoot bool

	// ExcludeIntermediate makes GetCACert leave the intermediate out, so
	// that it returns only the decrypter certificate (plus the root with
	// IncludeRoot).
	ExcludeIntermediate bool

	// MinimumPublicKeyLength is the smallest RSA key, in bits, step-ca signs
	// a CSR for. Zero means step-ca's default, 2048.
	MinimumPublicKeyLength int

	// ForceCN makes step-ca copy the first SAN into the subject's common
	// name when the CSR has none.
	ForceCN bool

	// Capabilities replaces the GetCACaps answer. Empty means step-ca's
	// default: Renewal, SHA-1, SHA-256, AES, DES3, SCEPStandard,
	// POSTPKIOperation.
	Capabilities []string

	// EncryptionAlgorithmIdentifier selects the content cipher of the
	// CertRep envelope; one of the Encrypt* constants (zero: DES-CBC).
	EncryptionAlgorithmIdentifier int

	// CertDuration is the validity of the certificates step-ca issues.
	// Zero means step-ca's default, 24h.
	CertDuration time.Duration

	// StartTimeout bounds the wait for /health to answer. Zero means 60s.
	StartTimeout time.Duration
}

// Server is a running step-ca. Its process is killed when the test ends.
type Server struct {
	// URL is the SCEP endpoint, https://127.0.0.1:PORT/scep/<provisioner>.
	URL string
	// BaseURL is https://127.0.0.1:PORT, where /health and /roots.pem are.
	BaseURL string
	// Provisioner is the SCEP provisioner's name.
	Provisioner string
	// Challenge is the challenge password the provisioner requires, if any.
	Challenge string

	// Root is the root CA certificate; it also anchors step-ca's HTTPS
	// certificate.
	Root *x509.Certificate
	// Intermediate is the issuing CA certificate (EC unless
	// Options.RSAIntermediate).
	Intermediate *x509.Certificate
	// Decrypter is the provisioner's RSA certificate, issued by the
	// intermediate: requests are enveloped to it and it signs the CertRep
	// replies. Nil with Options.NoDecrypter, when the intermediate does both.
	Decrypter *x509.Certificate
	// DecrypterKey is the private key of Decrypter (nil with NoDecrypter).
	DecrypterKey *rsa.PrivateKey
	// RootPool holds Root, for TLS and for verifying issued certificates.
	RootPool *x509.CertPool

	// Dir is the temporary directory with ca.json, the PKI and the log.
	Dir string
	// ConfigPath is the path of the ca.json step-ca was started with.
	ConfigPath string
	// LogPath is the file step-ca's stdout and stderr go to.
	LogPath string

	// t, bin and timeout start the process again (Restart); stop kills
	// the one running.
	t       testing.TB
	bin     string
	timeout time.Duration
	stop    func()
}

// HTTPClient returns an HTTP client that trusts only Root, with a timeout.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: s.RootPool, MinVersion: tls.VersionTLS12},
		},
	}
}

// Log returns what step-ca has written to LogPath so far.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.LogPath, err)
	}
	return string(b)
}

// Start generates a PKI and a ca.json in a temporary directory, starts step-ca
// on a free loopback port and waits until it answers /health. The process is
// killed and reaped by t.Cleanup; if the test failed, the tail of step-ca's log
// is logged. A missing binary is a t.Fatalf, never a skip.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()

	bin, err := binaryPath()
	if err != nil {
		t.Fatalf("stepca: %v", err)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		t.Fatalf("stepca: step-ca binary not found at %s: run `make step-ca` (or hack/step-ca.sh) in the repository root first, or set %s", bin, BinEnv)
	}
	if opts.NoDecrypter && !opts.RSAIntermediate {
		t.Fatalf("stepca: Options.NoDecrypter needs Options.RSAIntermediate: step-ca can only use an RSA intermediate for SCEP")
	}
	if opts.Provisioner == "" {
		opts.Provisioner = "scep"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}

	dir := t.TempDir()
	s := &Server{
		Provisioner: opts.Provisioner,
		Challenge:   opts.Challenge,
		Dir:         dir,
		ConfigPath:  filepath.Join(dir, "ca.json"),
		LogPath:     filepath.Join(dir, "step-ca.log"),
	}
	files, err := s.writePKI(opts)
	if err != nil {
		t.Fatalf("stepca: generating PKI: %v", err)
	}

	// The port is picked by binding :0 and releasing it, so another process
	// can take it before step-ca binds it: retry a few times on that race.
	s.t, s.bin, s.timeout = t, bin, opts.StartTimeout
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freeport.Loopback()
		if err != nil {
			t.Fatalf("stepca: picking a port: %v", err)
		}
		if err := writeConfig(s.ConfigPath, files, port, opts); err != nil {
			t.Fatalf("stepca: writing ca.json: %v", err)
		}
		s.BaseURL = "https://127.0.0.1:" + strconv.Itoa(port)
		s.URL = s.BaseURL + "/scep/" + opts.Provisioner

		lastErr = s.run(t, bin, opts.StartTimeout)
		if lastErr == nil {
			return s
		}
		if errors.As(lastErr, new(noRetryError)) || !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("stepca: starting %s: %v", bin, lastErr)
	return nil
}

// run starts the process and waits for /health, then checks the SCEP
// endpoint. On success it registers the cleanup that stops the process; on
// failure the process is already gone.
func (s *Server) run(t testing.TB, bin string, timeout time.Duration) error {
	logFile, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child keeps its own descriptor

	cmd := exec.Command(bin, s.ConfigPath)
	cmd.Dir = s.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// STEPPATH keeps step-ca away from the user's ~/.step.
	cmd.Env = append(os.Environ(), "STEPPATH="+filepath.Join(s.Dir, "steppath"))
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	client := s.HTTPClient()
	client.Timeout = 2 * time.Second
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("step-ca exited before answering /health (%v); log %s:\n%s", waitErr, s.LogPath, tail(s.Log(), 4000))
		default:
		}
		if err := get(client, s.BaseURL+"/health"); err == nil {
			break
		} else if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("step-ca did not answer %s/health within %v (last error: %v); log %s:\n%s", s.BaseURL, timeout, err, s.LogPath, tail(s.Log(), 4000))
		}
		select {
		case <-exited:
		case <-time.After(50 * time.Millisecond):
		}
	}

	// step-ca keeps running when a provisioner fails to initialize (it logs
	// "failed to initialize SCEP provisioner" and answers HTTP 500 on its
	// URL), so /health alone does not prove the SCEP endpoint works.
	if err := get(client, s.URL+"?operation=GetCACaps"); err != nil {
		stop()
		return noRetryError{fmt.Errorf("step-ca is up but its SCEP provisioner is not: %v; log %s:\n%s", err, s.LogPath, tail(s.Log(), 4000))}
	}

	s.stop = stop
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("stepca: step-ca log (%s):\n%s", s.LogPath, tail(s.Log(), 8000))
		}
	})
	return nil
}

// Kill sends SIGKILL to step-ca and waits until it is gone: connections
// are cut, even those whose request it was answering.
func (s *Server) Kill() { s.stop() }

// Restart starts step-ca again, after Kill, with the same ca.json (same
// port, keys and database) and waits until its SCEP endpoint answers.
func (s *Server) Restart() error { return s.run(s.t, s.bin, s.timeout) }

// noRetryError marks start-up errors that a new port would not fix.
type noRetryError struct{ error }

// get requires HTTP 200 from url.
func get(client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// binaryPath returns $STEPCA_BIN, or bin/step-ca in the repository root.
func binaryPath() (string, error) {
	if p := os.Getenv(BinEnv); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin", "step-ca"), nil
}

// RepoRoot walks up from the working directory to the directory whose go.mod
// declares RootModule (nested modules such as hack/tools/stepca are skipped).
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if mod, err := modulePath(filepath.Join(dir, "go.mod")); err == nil && mod == RootModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod declaring module %s above %s", RootModule, wd)
		}
		dir = parent
	}
}

func modulePath(goMod string) (string, error) {
	f, err := os.Open(goMod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no module directive")
}

// pkiFiles are the paths and inline PEM blobs ca.json refers to.
type pkiFiles struct {
	root, intermediate, intermediateKey string
	decrypterCertPEM, decrypterKeyPEM   []byte
}

// writePKI generates the root, intermediate and decrypter and writes the CA
// files (unencrypted PEM: step-ca accepts them, so no password file).
func (s *Server) writePKI(opts Options) (pkiFiles, error) {
	var f pkiFiles
	now := time.Now()

	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	rootTmpl := caTemplate("stepca-test Root CA", now, 1)
	s.Root, err = sign(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return f, fmt.Errorf("root: %w", err)
	}

	var intKey crypto.Signer
	if opts.RSAIntermediate {
		intKey, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		intKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return f, err
	}
	intTmpl := caTemplate("stepca-test Intermediate CA", now, 0)
	intTmpl.MaxPathLenZero = true
	s.Intermediate, err = sign(intTmpl, s.Root, intKey.Public(), rootKey)
	if err != nil {
		return f, fmt.Errorf("intermediate: %w", err)
	}

	s.RootPool = x509.NewCertPool()
	s.RootPool.AddCert(s.Root)

	f.root = filepath.Join(s.Dir, "root_ca.crt")
	f.intermediate = filepath.Join(s.Dir, "intermediate_ca.crt")
	f.intermediateKey = filepath.Join(s.Dir, "intermediate_ca_key")
	if err := writePEM(f.root, "CERTIFICATE", s.Root.Raw, 0o644); err != nil {
		return f, err
	}
	if err := writePEM(f.intermediate, "CERTIFICATE", s.Intermediate.Raw, 0o644); err != nil {
		return f, err
	}
	intDER, err := x509.MarshalPKCS8PrivateKey(intKey)
	if err != nil {
		return f, err
	}
	if err := writePEM(f.intermediateKey, "PRIVATE KEY", intDER, 0o600); err != nil {
		return f, err
	}

	if opts.NoDecrypter {
		return f, nil
	}
	s.DecrypterKey, err = rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return f, err
	}
	decTmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{Organization: []string{"stepca-test"}, CommonName: "stepca-test SCEP decrypter"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
	}
	s.Decrypter, err = sign(decTmpl, s.Intermediate, s.DecrypterKey.Public(), intKey)
	if err != nil {
		return f, fmt.Errorf("decrypter: %w", err)
	}
	f.decrypterCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Decrypter.Raw})
	f.decrypterKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(s.DecrypterKey)})
	// Also on disk, for people reading a failed test's directory.
	if err := os.WriteFile(filepath.Join(s.Dir, "scep_decrypter.crt"), f.decrypterCertPEM, 0o644); err != nil {
		return f, err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "scep_decrypter_key"), f.decrypterKeyPEM, 0o600); err != nil {
		return f, err
	}
	return f, nil
}

func caTemplate(cn string, now time.Time, maxPathLen int) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{Organization: []string{"stepca-test"}, CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            maxPathLen,
	}
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// scepProvisioner is the JSON of step-ca's provisioner.SCEP. The decrypter
// certificate and key are PEM inlined as []byte, i.e. base64 in JSON.
type scepProvisioner struct {
	Type                          string            `json:"type"`
	Name                          string            `json:"name"`
	ForceCN                       bool              `json:"forceCN,omitempty"`
	Challenge                     string            `json:"challenge,omitempty"`
	Capabilities                  []string          `json:"capabilities,omitempty"`
	IncludeRoot                   bool              `json:"includeRoot,omitempty"`
	ExcludeIntermediate           bool              `json:"excludeIntermediate,omitempty"`
	MinimumPublicKeyLength        int               `json:"minimumPublicKeyLength,omitempty"`
	DecrypterCertificate          []byte            `json:"decrypterCertificate,omitempty"`
	DecrypterKeyPEM               []byte            `json:"decrypterKeyPEM,omitempty"`
	EncryptionAlgorithmIdentifier int               `json:"encryptionAlgorithmIdentifier,omitempty"`
	Claims                        map[string]string `json:"claims,omitempty"`
}

func writeConfig(path string, f pkiFiles, port int, opts Options) error {
	prov := scepProvisioner{
		Type:                          "SCEP",
		Name:                          opts.Provisioner,
		ForceCN:                       opts.ForceCN,
		Challenge:                     opts.Challenge,
		Capabilities:                  opts.Capabilities,
		IncludeRoot:                   opts.IncludeRoot,
		ExcludeIntermediate:           opts.ExcludeIntermediate,
		MinimumPublicKeyLength:        opts.MinimumPublicKeyLength,
		DecrypterCertificate:          f.decrypterCertPEM,
		DecrypterKeyPEM:               f.decrypterKeyPEM,
		EncryptionAlgorithmIdentifier: opts.EncryptionAlgorithmIdentifier,
	}
	if d := opts.CertDuration; d > 0 {
		maxDur := 24 * time.Hour
		if d > maxDur {
			maxDur = d
		}
		minDur := 5 * time.Minute
		if d < minDur {
			minDur = d
		}
		prov.Claims = map[string]string{
			"minTLSCertDuration":     minDur.String(),
			"maxTLSCertDuration":     maxDur.String(),
			"defaultTLSCertDuration": d.String(),
		}
	}
	cfg := map[string]any{
		"root":     f.root,
		"crt":      f.intermediate,
		"key":      f.intermediateKey,
		"address":  "127.0.0.1:" + strconv.Itoa(port),
		"dnsNames": []string{"127.0.0.1", "localhost"},
		"logger":   map[string]string{"format": "text"},
		// No "db": step-ca then keeps an in-memory store, which SCEP is
		// happy with, and there is nothing on disk to lock or clean.
		"authority": map[string]any{
			"provisioners": []any{prov},
		},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o600)
}
