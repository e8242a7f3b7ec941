package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// serverFlags are the flags every command shares: where the server is and
// how to trust it.
type serverFlags struct {
	url          string
	caBundle     string
	caIdentifier string
	fingerprint  string
	insecure     bool
	timeout      time.Duration
	verbose      bool
}

func (f *serverFlags) register(fs *flag.FlagSet, withCA bool) {
	fs.StringVar(&f.url, "url", "", "SCEP server URL, e.g. http://ndes.corp/certsrv/mscep/mscep.dll (required)")
	f.registerTrust(fs)
	if withCA {
		fs.StringVar(&f.caIdentifier, "ca-identifier", "", "CA identifier sent with GetCACert (servers hosting several CAs)")
		fs.StringVar(&f.fingerprint, "fingerprint", "", "pin the CA: SHA-256, SHA-1 or MD5 fingerprint in hex (spaces and colons allowed)")
	}
}

// registerTrust registers the flags on how to reach and trust a server,
// shared by the SCEP endpoint and NDES's admin page.
func (f *serverFlags) registerTrust(fs *flag.FlagSet) {
	fs.StringVar(&f.caBundle, "ca-bundle", "", "PEM file of CAs to trust for an https URL (default: system roots)")
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify the https server certificate (dangerous; warns)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "timeout of each HTTP round trip")
	fs.BoolVar(&f.verbose, "v", false, "log each HTTP round trip to stderr")
}

func (f *serverFlags) logger(stderr io.Writer) logr.Logger {
	verbosity := 0
	if f.verbose {
		verbosity = 1
	}
	return funcr.New(func(prefix, args string) { fmt.Fprintln(stderr, args) }, funcr.Options{Verbosity: verbosity})
}

// rootCAs returns the --ca-bundle pool, or nil for the system roots.
func (f *serverFlags) rootCAs() (*x509.CertPool, error) {
	if f.caBundle == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(f.caBundle)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-bundle %s holds no PEM certificate", f.caBundle)
	}
	return pool, nil
}

func (f *serverFlags) client(stderr io.Writer) (*scepclient.Client, error) {
	if f.url == "" {
		return nil, fmt.Errorf("%w: --url is required", errUsage)
	}
	cfg := scepclient.Config{URL: f.url, CAIdentifier: f.caIdentifier, InsecureSkipVerify: f.insecure, Timeout: f.timeout, Logger: f.logger(stderr)}
	var err error
	if cfg.RootCAs, err = f.rootCAs(); err != nil {
		return nil, err
	}
	c, err := scepclient.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return c, nil
}

func (f *serverFlags) pin() (*scep.Fingerprint, error) {
	if f.fingerprint == "" {
		return nil, nil
	}
	fp, err := scep.ParseFingerprint(f.fingerprint)
	if err != nil {
		return nil, fmt.Errorf("%w: --fingerprint: %v", errUsage, err)
	}
	return &fp, nil
}

// parse parses args, turning flag errors and stray arguments into usage errors.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, strings.Join(fs.Args(), " "))
	}
	return nil
}

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
