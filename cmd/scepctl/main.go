// Command scepctl does by hand what scep-operator does: it asks a SCEP server
// for its capabilities and CA certificates, fetches a challenge password from
// NDES's admin page, and enrolls a certificate. It is meant for an admin
// checking a server before writing a SCEPProfile.
//
//	scepctl caps   --url URL [--ca-bundle FILE]
//	scepctl cacert --url URL [--ca-identifier ID] [--fingerprint FP] [--ca-bundle FILE] [--out FILE]
//	scepctl ndes-password --url ADMIN_URL --username USER --password-file FILE [--auth ntlm|basic]
//	               [--ca-bundle FILE] [--insecure] [--allow-plain-http]
//	scepctl ndes-password --url ADMIN_URL --auth kerberos --username USER (--password-file FILE | --keytab FILE)
//	               (--realm REALM --kdc HOST[:PORT],... | --krb5-conf FILE) [--spn HTTP/HOST]
//	               [--allow-ntlm-fallback] [--ca-bundle FILE] [--insecure]
//	scepctl enroll --url URL --subject DN [--dns NAME]... [--email ADDR]... [--uri URI]... [--upn UPN]...
//	               [--key FILE] [--key-size N] [--key-usage signing|encipherment|both] [--template NAME]
//	               [--challenge PW | --challenge-file FILE |
//	                --ndes-admin-url ADMIN_URL --ndes-username USER --ndes-password-file FILE [--ndes-auth ntlm|basic]
//	                [--ndes-allow-plain-http] [the Kerberos options as --ndes-realm, --ndes-kdc, ...]]
//	               [--fingerprint FP] [--ca-bundle FILE]
//	               [--ca-identifier ID] [--max-attempts N] [--retry-interval DURATION]
//	               [--renew --cert FILE] --out FILE
//	scepctl check-install [--metrics-url URL [--token-file FILE] [--metrics-ca-file FILE | --insecure-skip-tls-verify]]
//	               [--profiles=false] [--kubeconfig FILE]
//	scepctl doctor --url URL [...] | --profile [NAMESPACE/]NAME [--kubeconfig FILE] [--enroll]
//	scepctl version
//
// check-install is what the chart's `helm test` Pod runs: a scrape of the
// operator's metrics Service with the Pod's ServiceAccount token, and every
// profile's Ready condition.
// ndes-password prints the password alone on stdout. enroll with
// --ndes-admin-url fetches a fresh password before every PKCSReq, retries
// included, since NDES accepts each only once; --ca-bundle and --insecure
// apply to the admin page too. Neither ever prints the account's password.
// An http:// admin page takes --allow-plain-http (--ndes-allow-plain-http).
//
// When a server answers with something other than SCEP or the admin page,
// the error says what kind of answer it was, and the start of its text
// (cleaned, quoted, at most 200 bytes) follows on the next line: this is
// the admin's own terminal.
//
// doctor prints one OK/WARN/FAIL/SKIP line per step with the reason and,
// for a failure, what to fix; it never prints a password.
//
// Exit status: 0 when the command did what it was asked (for enroll: a
// certificate was written; for doctor: no step failed), 1 on failure, 2 on a
// usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/scep-operator/scep-operator/internal/ndes"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/internal/version"
)

// errUsage marks errors that are the caller's wording, not the server's.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `scepctl: a SCEP (RFC 8894) client for admins

Commands:
  caps           print the server's capabilities, one a line
  cacert         print the server's CA and RA certificates (role, subject, notAfter, fingerprints)
  ndes-password  print one fresh challenge password from NDES's admin page (/certsrv/mscep_admin/)
  enroll         enroll a certificate and write it with its chain as PEM; with --ndes-admin-url,
                 each request gets a fresh password from NDES's admin page
  check-install  check an installed operator from a Pod (what helm test runs): metrics and profiles Ready
  doctor         check a server (or a profile, as the operator would use it) end to end, step by
                 step, and say what to fix
  version        print scepctl's version and the commit it was built from

Run 'scepctl COMMAND -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch args[0] {
	case "caps":
		err = runCaps(ctx, args[1:], stdout, stderr)
	case "cacert":
		err = runCACert(ctx, args[1:], stdout, stderr)
	case "ndes-password":
		err = runNDESPassword(ctx, args[1:], stdout, stderr)
	case "enroll":
		err = runEnroll(ctx, args[1:], stdout, stderr)
	case "check-install":
		err = runCheckInstall(ctx, args[1:], stdout, stderr)
	case "doctor":
		err = runDoctor(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "scepctl", version.String())
	default:
		fmt.Fprintf(stderr, "scepctl: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "scepctl %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "scepctl %s: %v\n", args[0], err)
		if excerpt := serverExcerpt(err); excerpt != "" {
			fmt.Fprintf(stderr, "the answer starts with: %s\n", excerpt)
		}
		return 1
	}
}

// serverExcerpt is the cleaned start of the server's answer carried by err,
// if any.
func serverExcerpt(err error) string {
	var (
		httpErr *scepclient.HTTPError
		content *scepclient.ContentError
		page    *ndes.PageError
		auth    *ndes.AuthError
	)
	switch {
	case errors.As(err, &httpErr):
		return httpErr.Excerpt
	case errors.As(err, &content):
		return content.Excerpt
	case errors.As(err, &page):
		return page.Excerpt
	case errors.As(err, &auth):
		return auth.Excerpt
	}
	return ""
}
