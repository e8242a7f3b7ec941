package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/ndes"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// doctorFlags are doctor's flags: a server given by hand (the flags every
// command shares) or a profile read from the cluster, and what to try.
type doctorFlags struct {
	serverFlags
	profile       string
	kubeconfig    string
	kubeContext   string
	clusterNS     string
	challenge     string
	challengeFile string
	ndes          ndesFlags
	minKeySize    int
	egressAllow   string
	egressDeny    string
	enroll        bool
	subject       string
}

// target is the server the doctor checks, as the operator would reach it:
// its client, trust, pin, key size floor and challenge.
type target struct {
	// name is the profile's key, or the URL.
	name string
	url  *url.URL
	// client is the SCEP client: built from the profile by the operator's
	// own code (profiles.Registry) with --profile.
	client *scepclient.Client
	// roots trusts an https URL; nil means the system roots.
	roots *x509.CertPool
	// rootsFrom names where roots came from, for messages.
	rootsFrom string
	// insecure is TLS verification turned off, and by what.
	insecure     bool
	insecureFrom string
	// pin is the CA fingerprint, and the flag or field it came from.
	pins    []scep.Fingerprint
	pinFrom string
	// keySizeFloor is the smallest RSA key the profile accepts.
	keySizeFloor int
	egress       *egress.Policy
	// challenge returns the static challenge password; nil for none.
	challenge func(ctx context.Context) (string, error)
	// ndes fetches one password from NDES's admin page; nil for none.
	ndes    func(ctx context.Context) (string, error)
	ndesURL string
	// status is the HTTP status of the last round trip per operation (0:
	// no answer), which scepclient reports through Observe.
	status map[string]int
}

// observe records a round trip's status (scepclient.Config.Observe).
func (t *target) observe(op string, status int, _ time.Duration) { t.status[op] = status }

const doctorUsage = `checks a SCEP server end to end, step by step, and says what to fix:
DNS, TCP, TLS (chain, expiry, name), GetCACaps, GetCACert (roles, expiry,
pin), algorithms and key sizes against the floor, POST or GET (and the URL
length), NDES's admin page and credentials when given, and with --enroll a
test enrollment (a real certificate is issued).

  scepctl doctor --url URL [--fingerprint FP] [--ca-bundle FILE] [--ca-identifier ID]
                 [--challenge-file FILE | --ndes-admin-url URL --ndes-username USER --ndes-password-file FILE]
                 [--min-key-size N] [--egress-allow-cidrs CIDRS] [--egress-deny-cidrs CIDRS]
                 [--enroll [--subject DN]]
  scepctl doctor --profile [NAMESPACE/]NAME [--kubeconfig FILE] [--context NAME]
                 [--cluster-resource-namespace NS] [--enroll [--subject DN]]

NAMESPACE/NAME is a SCEPProfile, NAME alone a ClusterSCEPProfile. With
--profile, the profile and the Secrets it names are read with your
kubeconfig and the server is reached exactly as the operator would.
No password is ever printed.

Exit status: 0 when enrollment can work (warnings allowed), 1 when a step
failed, 2 on a usage error.
`

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f doctorFlags
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), doctorUsage+"\nFlags:\n"); fs.PrintDefaults() }
	f.register(fs, true)
	fs.StringVar(&f.profile, "profile", "", "check the SCEPProfile NAMESPACE/NAME or the ClusterSCEPProfile NAME, as the operator would use it")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig for --profile (default: $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&f.kubeContext, "context", "", "kubeconfig context for --profile (default: the current one)")
	fs.StringVar(&f.clusterNS, "cluster-resource-namespace", "scep-operator", "namespace of the Secrets of ClusterSCEPProfiles: the operator's --cluster-resource-namespace")
	fs.StringVar(&f.challenge, "challenge", "", "challenge password for --enroll (visible in the process list; prefer --challenge-file)")
	fs.StringVar(&f.challengeFile, "challenge-file", "", "file holding the challenge password for --enroll")
	f.ndes.register(fs, "ndes-admin-url", "ndes-")
	fs.IntVar(&f.minKeySize, "min-key-size", 2048, "smallest RSA key to accept for the CA, RA and requests (a profile's keySize with --profile)")
	fs.StringVar(&f.egressAllow, "egress-allow-cidrs", "", "the operator's --egress-allow-cidrs, to check the server's addresses against")
	fs.StringVar(&f.egressDeny, "egress-deny-cidrs", "", "the operator's --egress-deny-cidrs, to check the server's addresses against")
	fs.BoolVar(&f.enroll, "enroll", false, "send a test enrollment (PKCSReq); the server issues a real certificate")
	fs.StringVar(&f.subject, "subject", "CN=scepctl-doctor", "subject of the test enrollment's CSR")
	if err := parse(fs, args, stderr); err != nil {
		return helpOK(err)
	}
	policy, err := egress.Parse(f.egressAllow, f.egressDeny)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var t *target
	r := &report{w: stdout}
	if f.profile != "" {
		if f.url != "" || f.fingerprint != "" || f.caBundle != "" || f.caIdentifier != "" || f.insecure || f.ndes.given() || f.challenge != "" || f.challengeFile != "" {
			return fmt.Errorf("%w: --profile reads the URL, trust, pin and challenge from the profile; give no --url, --ca-bundle, --fingerprint, --ca-identifier, --insecure, --challenge or --ndes-* with it", errUsage)
		}
		if t, err = f.profileTarget(ctx, policy, stderr, r); err != nil {
			return err
		}
	} else if t, err = f.flagTarget(policy, stderr); err != nil {
		return err
	}
	if t != nil {
		d := &doctor{t: t, r: r, timeout: f.timeout, enroll: f.enroll, subject: f.subject}
		d.run(ctx)
	}
	r.summary()
	if r.fails > 0 {
		return errDoctorFailed
	}
	return nil
}

// errDoctorFailed is returned when a step failed; the report said why.
var errDoctorFailed = errors.New("enrollment cannot work until the FAIL steps above are fixed")

// flagTarget builds the target from --url and the flags around it.
func (f *doctorFlags) flagTarget(policy *egress.Policy, stderr io.Writer) (*target, error) {
	if f.url == "" {
		return nil, fmt.Errorf("%w: give --url or --profile", errUsage)
	}
	u, err := url.Parse(f.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: --url %q is not an http:// or https:// URL", errUsage, f.url)
	}
	t := &target{name: u.Redacted(), url: u, insecure: f.insecure, insecureFrom: "--insecure", keySizeFloor: f.minKeySize, egress: policy, status: map[string]int{}, rootsFrom: "the system roots"}
	if t.roots, err = f.rootCAs(); err != nil {
		return nil, err
	}
	if f.caBundle != "" {
		t.rootsFrom = "--ca-bundle " + f.caBundle
	}
	pin, err := f.pin()
	if err != nil {
		return nil, err
	}
	if pin != nil {
		t.pins = []scep.Fingerprint{*pin}
	}
	t.pinFrom = "--fingerprint"
	// An address the egress policy refuses gets no client: the egress step
	// reports it, and the steps after it do not run.
	if t.client, err = scepclient.New(scepclient.Config{
		URL: f.url, CAIdentifier: f.caIdentifier, RootCAs: t.roots, InsecureSkipVerify: f.insecure,
		Timeout: f.timeout, Egress: policy, Logger: f.logger(stderr), Observe: t.observe,
	}); err != nil && !egress.IsRefused(err) {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	ef := enrollFlags{challenge: f.challenge, challengeFile: f.challengeFile}
	pw, err := ef.readChallenge()
	if err != nil {
		return nil, err
	}
	if pw != "" {
		t.challenge = func(context.Context) (string, error) { return pw, nil }
	}
	if f.ndes.given() {
		if pw != "" {
			return nil, fmt.Errorf("%w: give --challenge/--challenge-file or --ndes-admin-url, not both", errUsage)
		}
		var nc *ndes.Client
		if nc, err = f.ndes.client(&f.serverFlags, stderr); err != nil {
			return nil, err
		}
		t.ndes, t.ndesURL = nc.Password, nc.URL()
	}
	return t, nil
}

// verdict is a step's outcome.
type verdict string

const (
	verdictOK   verdict = "OK"
	verdictWarn verdict = "WARN"
	verdictFail verdict = "FAIL"
	verdictSkip verdict = "SKIP"
)

// report prints the steps as they finish and counts the outcomes.
type report struct {
	w            io.Writer
	fails, warns int
}

func (r *report) add(v verdict, step, format string, args ...any) {
	switch v {
	case verdictFail:
		r.fails++
	case verdictWarn:
		r.warns++
	}
	fmt.Fprintf(r.w, "%-4s  %-15s %s\n", v, step, fmt.Sprintf(format, args...))
}

// fix prints what to do about the step just added.
func (r *report) fix(format string, args ...any) {
	fmt.Fprintf(r.w, "      %-15s fix: %s\n", "", fmt.Sprintf(format, args...))
}

// detail prints a further line under the step just added.
func (r *report) detail(format string, args ...any) {
	fmt.Fprintf(r.w, "      %-15s %s\n", "", fmt.Sprintf(format, args...))
}

func (r *report) summary() {
	switch {
	case r.fails > 0:
		fmt.Fprintf(r.w, "\n%d step(s) failed, %d warning(s): enrollment cannot work until the FAIL steps are fixed.\n", r.fails, r.warns)
	case r.warns > 0:
		fmt.Fprintf(r.w, "\nno step failed, %d warning(s): enrollment can work; read the WARN steps.\n", r.warns)
	default:
		fmt.Fprintln(r.w, "\nevery step passed: enrollment can work.")
	}
}

// plural is "" for one, "s" otherwise.
func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// joinNames lists names for a message, at most max of them.
func joinNames(names []string, maxNames int) string {
	if len(names) > maxNames {
		return strings.Join(names[:maxNames], ", ") + fmt.Sprintf(" and %d more", len(names)-maxNames)
	}
	return strings.Join(names, ", ")
}
