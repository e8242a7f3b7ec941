package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/scep-operator/scep-operator/internal/dn"
	"github.com/scep-operator/scep-operator/internal/ndes"
	"github.com/scep-operator/scep-operator/internal/pemkey"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

type enrollFlags struct {
	serverFlags
	subject       string
	dns, emails   multiFlag
	uris, upns    multiFlag
	keyFile       string
	keySize       int
	keyUsage      string
	certTemplate  string
	challenge     string
	challengeFile string
	maxAttempts   int
	retryInterval time.Duration
	renew         bool
	certFile      string
	out           string
	ndes          ndesFlags
}

func runEnroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f enrollFlags
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	f.register(fs, true)
	fs.StringVar(&f.subject, "subject", "", `subject DN, e.g. "CN=app.corp,O=Corp" (required)`)
	fs.Var(&f.dns, "dns", "DNS name SAN (repeatable)")
	fs.Var(&f.emails, "email", "RFC822 (email) SAN (repeatable)")
	fs.Var(&f.uris, "uri", "URI SAN (repeatable)")
	fs.Var(&f.upns, "upn", "Microsoft UPN otherName SAN (repeatable)")
	fs.StringVar(&f.keyFile, "key", "", "private key PEM; used if it exists, else an RSA key is generated there (mode 0600)")
	fs.IntVar(&f.keySize, "key-size", 2048, "RSA key size for a generated key: 1024, 2048, 3072 or 4096")
	fs.StringVar(&f.keyUsage, "key-usage", "", "key usage to request: signing, encipherment or both (default: none requested)")
	fs.StringVar(&f.certTemplate, "template", "", "AD CS certificate template name to ask for, sent in the CSR as szOID_ENROLL_CERTTYPE_EXTENSION (1.3.6.1.4.1.311.20.2); stock NDES picks its registry's template by key usage instead")
	fs.StringVar(&f.challenge, "challenge", "", "challenge password (visible in the process list; prefer --challenge-file)")
	fs.StringVar(&f.challengeFile, "challenge-file", "", "file holding the challenge password")
	fs.IntVar(&f.maxAttempts, "max-attempts", 3, "attempts before giving up, counting PENDING polls and transient errors")
	fs.DurationVar(&f.retryInterval, "retry-interval", 10*time.Second, "wait between attempts and PENDING polls")
	fs.BoolVar(&f.renew, "renew", false, "send a RenewalReq signed with --cert and --key instead of a PKCSReq")
	fs.StringVar(&f.certFile, "cert", "", "current certificate PEM, with --renew")
	fs.StringVar(&f.out, "out", "", "write the issued certificate and its chain here as PEM (required)")
	f.ndes.register(fs, "ndes-admin-url", "ndes-")
	if err := parse(fs, args, stderr); err != nil {
		return helpOK(err)
	}
	if f.subject == "" || f.out == "" {
		return fmt.Errorf("%w: --subject and --out are required", errUsage)
	}
	if f.maxAttempts < 1 {
		return fmt.Errorf("%w: --max-attempts must be at least 1", errUsage)
	}
	if f.renew && (f.certFile == "" || f.keyFile == "") {
		return fmt.Errorf("%w: --renew needs --cert and --key (the certificate being renewed and its key)", errUsage)
	}
	switch f.keySize {
	case 1024, 2048, 3072, 4096:
	default:
		return fmt.Errorf("%w: --key-size must be 1024, 2048, 3072 or 4096", errUsage)
	}
	ku, err := parseKeyUsage(f.keyUsage)
	if err != nil {
		return err
	}
	challenge, err := f.readChallenge()
	if err != nil {
		return err
	}
	// With NDES's admin page, every request carries a password fetched
	// just before it is sent (see request below).
	var passwords *ndes.Client
	if f.ndes.given() {
		if f.challenge != "" || f.challengeFile != "" {
			return fmt.Errorf("%w: --ndes-admin-url fetches a fresh challenge password for every request; give it or --challenge/--challenge-file, not both", errUsage)
		}
		if passwords, err = f.ndes.client(&f.serverFlags, stderr); err != nil {
			return err
		}
		defer passwords.CloseIdleConnections()
	}
	tmpl, err := f.template(ku, challenge)
	if err != nil {
		return err
	}
	pin, err := f.pin()
	if err != nil {
		return err
	}
	c, err := f.client(stderr)
	if err != nil {
		return err
	}
	key, err := loadOrCreateKey(f.keyFile, f.keySize, stderr)
	if err != nil {
		return err
	}

	info, err := c.Discover(ctx, pin)
	if err != nil {
		return err
	}
	// The CSR with the static challenge, if any. With NDES it carries no
	// password and only yields the subject the signer and CertPoll need;
	// request replaces it before sending.
	csr, err := scep.NewCSR(tmpl, key)
	if err != nil {
		return err
	}
	parsedCSR, _ := x509.ParseCertificateRequest(csr)
	signer, err := f.signer(key, parsedCSR.RawSubject)
	if err != nil {
		return err
	}
	if f.renew && !info.Caps.Renewal() {
		fmt.Fprintln(stderr, "warning: the server does not announce Renewal; sending RenewalReq anyway")
	}
	fmt.Fprintf(stderr, "enrolling %q at %s (%s, %s)\n", f.subject, c.URL(), info.Algorithms, method(info.Caps))
	if f.certTemplate != "" {
		fmt.Fprintf(stderr, "asking for certificate template %q (extension %s in the CSR)\n", f.certTemplate, ndes.OIDEnrollCertType)
	}
	if passwords != nil {
		fmt.Fprintf(stderr, "each request gets a fresh challenge password from %s\n", passwords.URL())
	}

	var txID scep.TransactionID
	// request sends the PKCSReq (or RenewalReq). NDES passwords are good
	// for one request: a retry after a transient error fetches a new one
	// and rebuilds the CSR around it, keeping key, subject and
	// transactionID. CertPoll carries no CSR and needs no password.
	request := func() (*scep.CertRep, error) {
		req := csr
		if passwords != nil {
			pw, err := passwords.Password(ctx)
			if err != nil {
				return nil, fmt.Errorf("fetching a challenge password: %w", err)
			}
			t := tmpl
			t.ChallengePassword = pw
			if req, err = scep.NewCSR(t, key); err != nil {
				return nil, err
			}
		}
		var msg *scep.Message
		var err error
		opts := info.MessageOptions(signer, txID)
		if f.renew {
			msg, err = scep.NewRenewalReq(req, opts)
		} else {
			msg, err = scep.NewPKCSReq(req, opts)
		}
		if err != nil {
			return nil, err
		}
		txID = msg.TransactionID
		return c.Send(ctx, info, msg)
	}
	pending := false
	for attempt := 1; ; attempt++ {
		var rep *scep.CertRep
		if pending {
			rep, err = c.CertPoll(ctx, info, signer, txID, parsedCSR.RawSubject)
		} else {
			rep, err = request()
		}
		switch {
		case err == nil && rep.Status == scep.StatusSuccess:
			return writeChain(f.out, rep.Certificates, stdout)
		case err == nil: // PENDING
			pending = true
			fmt.Fprintf(stderr, "attempt %d/%d: PENDING (transaction %s)\n", attempt, f.maxAttempts, txID)
			if attempt >= f.maxAttempts {
				return fmt.Errorf("still PENDING after %d attempts; the transaction is %s (approve it on the CA, then run again)", attempt, txID)
			}
		case scepclient.IsTransient(err), ndesTemporary(err):
			fmt.Fprintf(stderr, "attempt %d/%d: %v\n", attempt, f.maxAttempts, err)
			if attempt >= f.maxAttempts {
				return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
			}
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(f.retryInterval):
		}
	}
}

func method(caps scep.Capabilities) string {
	if caps.POST() {
		return "POST"
	}
	return "GET"
}

func parseKeyUsage(s string) (x509.KeyUsage, error) {
	switch strings.ToLower(s) {
	case "":
		return 0, nil
	case "signing":
		return x509.KeyUsageDigitalSignature, nil
	case "encipherment", "encryption":
		return x509.KeyUsageKeyEncipherment, nil
	case "both":
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, nil
	}
	return 0, fmt.Errorf("%w: --key-usage must be signing, encipherment or both", errUsage)
}

func (f *enrollFlags) readChallenge() (string, error) {
	switch {
	case f.challenge != "" && f.challengeFile != "":
		return "", fmt.Errorf("%w: give --challenge or --challenge-file, not both", errUsage)
	case f.challengeFile != "":
		b, err := os.ReadFile(f.challengeFile)
		if err != nil {
			return "", fmt.Errorf("reading --challenge-file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return f.challenge, nil
}

func (f *enrollFlags) template(ku x509.KeyUsage, challenge string) (scep.CSRTemplate, error) {
	subject, err := dn.Parse(f.subject)
	if err != nil {
		return scep.CSRTemplate{}, fmt.Errorf("%w: --subject: %v", errUsage, err)
	}
	t := scep.CSRTemplate{Subject: subject, DNSNames: f.dns, EmailAddresses: f.emails, UPNs: f.upns, KeyUsage: ku, ChallengePassword: challenge}
	for _, u := range f.uris {
		parsed, err := url.Parse(u)
		if err != nil || parsed.Scheme == "" {
			return scep.CSRTemplate{}, fmt.Errorf("%w: --uri %q is not an absolute URI", errUsage, u)
		}
		t.URIs = append(t.URIs, parsed)
	}
	if f.certTemplate != "" {
		ext, err := ndes.TemplateExtension(f.certTemplate)
		if err != nil {
			return scep.CSRTemplate{}, fmt.Errorf("%w: --template: %v", errUsage, err)
		}
		t.Extensions = append(t.Extensions, ext)
	}
	return t, nil
}

// signer returns who signs the pkiMessage: the current certificate for a
// renewal; else the request's own RSA key with a self-signed certificate
// (RFC 8894); else, for a non-RSA key, a throwaway RSA key, since the reply
// is enveloped to the signer.
func (f *enrollFlags) signer(key crypto.Signer, rawSubject []byte) (*scep.Signer, error) {
	if f.renew {
		pemBytes, err := os.ReadFile(f.certFile)
		if err != nil {
			return nil, err
		}
		block, _ := pem.Decode(pemBytes)
		if block == nil {
			return nil, fmt.Errorf("--cert %s holds no PEM certificate", f.certFile)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("--cert %s: %w", f.certFile, err)
		}
		rk, ok := key.(*rsa.PrivateKey)
		if !ok || !rk.PublicKey.Equal(cert.PublicKey) {
			return nil, fmt.Errorf("--key does not hold the RSA key of --cert %s", f.certFile)
		}
		return &scep.Signer{Certificate: cert, Key: rk}, nil
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		var err error
		if rk, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, err
		}
	}
	return scep.NewSelfSignedSigner(rk, rawSubject, 0)
}

func loadOrCreateKey(path string, size int, stderr io.Writer) (crypto.Signer, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			return parseKey(path, b)
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, size)
	if err != nil {
		return nil, err
	}
	if path != "" {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "generated an RSA-%d key in %s\n", size, path)
	}
	return key, nil
}

func parseKey(path string, b []byte) (crypto.Signer, error) {
	k, err := pemkey.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("--key %s %w", path, err)
	}
	return k, nil
}

func writeChain(path string, chain []*x509.Certificate, stdout io.Writer) error {
	var buf []byte
	for _, c := range chain {
		buf = append(buf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		return err
	}
	leaf := chain[0]
	fmt.Fprintf(stdout, "subject:  %s\n", leaf.Subject)
	fmt.Fprintf(stdout, "issuer:   %s\n", leaf.Issuer)
	fmt.Fprintf(stdout, "serial:   %s\n", leaf.SerialNumber.Text(16))
	fmt.Fprintf(stdout, "notAfter: %s\n", leaf.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "SHA-256:  %s\n", scep.FingerprintOf(leaf, crypto.SHA256).Hex())
	fmt.Fprintf(stdout, "wrote %d certificate(s) to %s\n", len(chain), path)
	return nil
}

func keyDescription(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}
