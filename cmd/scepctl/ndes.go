package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/scep-operator/scep-operator/internal/ndes"
)

// ndesFlags say where NDES's admin page is and which account may ask it for
// challenge passwords. The names differ by command (--url in
// ndes-password, --ndes-admin-url in enroll), so each flag remembers its own
// for error messages.
type ndesFlags struct {
	url, username, passwordFile, auth string
	allowPlainHTTP                    bool
	krb                               kerberosFlags

	urlFlag, usernameFlag, passwordFileFlag, authFlag, allowPlainHTTPFlag string
}

// kerberosFlags are ndes.Kerberos's, for --auth kerberos: the same options
// a profile's challenge.dynamic.kerberos has.
type kerberosFlags struct {
	realm, kdcs, krb5Conf, spn, keytab string
	allowNTLMFallback                  bool

	prefix string
}

func (f *ndesFlags) register(fs *flag.FlagSet, urlFlag, prefix string) {
	f.urlFlag, f.usernameFlag, f.passwordFileFlag, f.authFlag, f.allowPlainHTTPFlag = urlFlag, prefix+"username", prefix+"password-file", prefix+"auth", prefix+"allow-plain-http"
	fs.StringVar(&f.url, f.urlFlag, "", "NDES admin page, e.g. https://ndes.corp/certsrv/mscep_admin/")
	fs.StringVar(&f.username, f.usernameFlag, "", `account allowed to request challenge passwords: DOMAIN\user or user@domain (kerberos: user or user@REALM)`)
	fs.StringVar(&f.passwordFile, f.passwordFileFlag, "", "file holding the account's password")
	fs.StringVar(&f.auth, f.authFlag, "", "how IIS authenticates the account: ntlm (default), kerberos (Negotiate) or basic")
	fs.BoolVar(&f.allowPlainHTTP, f.allowPlainHTTPFlag, false, "allow an http:// admin page: the account's credentials then cross the network unprotected (NTLM can be relayed, Basic read, a Kerberos ticket replayed); test servers only")
	k := &f.krb
	k.prefix = prefix
	fs.StringVar(&k.realm, prefix+"realm", "", "kerberos: the realm, e.g. CORP.EXAMPLE (default: from user@REALM or the krb5.conf)")
	fs.StringVar(&k.kdcs, prefix+"kdc", "", "kerberos: the realm's KDCs, comma-separated host or host:port (default port 88)")
	fs.StringVar(&k.krb5Conf, prefix+"krb5-conf", "", "kerberos: a krb5.conf file naming realms and KDCs (KDCs are never looked up in DNS)")
	fs.StringVar(&k.spn, prefix+"spn", "", "kerberos: the admin page's service principal (default HTTP/<host of the URL>)")
	fs.StringVar(&k.keytab, prefix+"keytab", "", "kerberos: a keytab file for the account, instead of --"+prefix+"password-file")
	fs.BoolVar(&k.allowNTLMFallback, prefix+"allow-ntlm-fallback", false, "kerberos: use NTLM where Kerberos cannot be tried (IIS offers no Negotiate, no KDC answers, the SPN is unknown); never after the KDC refused the credentials")
}

// given reports whether any of the flags was set.
func (f *ndesFlags) given() bool {
	return f.url != "" || f.username != "" || f.passwordFile != "" || f.auth != "" || f.krb.given()
}

func (k *kerberosFlags) given() bool {
	return k.realm != "" || k.kdcs != "" || k.krb5Conf != "" || k.spn != "" || k.keytab != "" || k.allowNTLMFallback
}

// config reads the files the flags name into the client's settings.
func (k *kerberosFlags) config() (*ndes.Kerberos, error) {
	c := &ndes.Kerberos{Realm: k.realm, SPN: k.spn, AllowNTLMFallback: k.allowNTLMFallback}
	for _, a := range strings.Split(k.kdcs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.KDCs = append(c.KDCs, a)
		}
	}
	if k.krb5Conf != "" {
		b, err := os.ReadFile(k.krb5Conf)
		if err != nil {
			return nil, fmt.Errorf("reading --%skrb5-conf: %w", k.prefix, err)
		}
		c.Krb5Conf = string(b)
	}
	if k.keytab != "" {
		b, err := os.ReadFile(k.keytab)
		if err != nil {
			return nil, fmt.Errorf("reading --%skeytab: %w", k.prefix, err)
		}
		c.Keytab = b
	}
	if len(c.KDCs) == 0 && c.Krb5Conf == "" {
		return nil, fmt.Errorf("%w: --%sauth kerberos needs --%skdc or --%skrb5-conf", errUsage, k.prefix, k.prefix, k.prefix)
	}
	return c, nil
}

// client checks the flags and returns a client for the admin page, trusting
// it as sf says.
func (f *ndesFlags) client(sf *serverFlags, stderr io.Writer) (*ndes.Client, error) {
	auth, err := ndes.ParseAuth(f.auth)
	if err != nil {
		return nil, fmt.Errorf("%w: --%s: %v", errUsage, f.authFlag, err)
	}
	keytabFlag := f.krb.prefix + "keytab"
	switch {
	case auth == ndes.AuthKerberos && (f.url == "" || f.username == "" || (f.passwordFile == "" && f.krb.keytab == "")):
		return nil, fmt.Errorf("%w: --%s, --%s and --%s (or --%s) go together", errUsage, f.urlFlag, f.usernameFlag, f.passwordFileFlag, keytabFlag)
	case auth != ndes.AuthKerberos && (f.url == "" || f.username == "" || f.passwordFile == ""):
		return nil, fmt.Errorf("%w: --%s, --%s and --%s go together", errUsage, f.urlFlag, f.usernameFlag, f.passwordFileFlag)
	case auth != ndes.AuthKerberos && f.krb.given():
		return nil, fmt.Errorf("%w: the Kerberos options take --%s kerberos", errUsage, f.authFlag)
	}
	var password string
	if f.passwordFile != "" {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("reading --%s: %w", f.passwordFileFlag, err)
		}
		password = strings.TrimRight(string(b), "\r\n")
		if password == "" {
			return nil, fmt.Errorf("%w: --%s %s is empty", errUsage, f.passwordFileFlag, f.passwordFile)
		}
	}
	var krb *ndes.Kerberos
	if auth == ndes.AuthKerberos {
		if krb, err = f.krb.config(); err != nil {
			return nil, err
		}
	}
	roots, err := sf.rootCAs()
	if err != nil {
		return nil, err
	}
	c, err := ndes.New(ndes.Config{
		URL: f.url, Auth: auth, Username: f.username, Password: password, Kerberos: krb, AllowPlainHTTP: f.allowPlainHTTP,
		RootCAs: roots, InsecureSkipVerify: sf.insecure, Timeout: sf.timeout, Logger: sf.logger(stderr),
	})
	if err != nil {
		if strings.HasPrefix(strings.ToLower(f.url), "http://") && !f.allowPlainHTTP {
			return nil, fmt.Errorf("%w: %v (--%s accepts that risk)", errUsage, err, f.allowPlainHTTPFlag)
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return c, nil
}

// runNDESPassword prints one fresh challenge password, and nothing else, on
// stdout, so that it can be captured by a script or pasted into a device.
func runNDESPassword(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		nf ndesFlags
		sf serverFlags
	)
	fs := flag.NewFlagSet("ndes-password", flag.ContinueOnError)
	nf.register(fs, "url", "")
	sf.registerTrust(fs)
	if err := parse(fs, args, stderr); err != nil {
		return helpOK(err)
	}
	c, err := nf.client(&sf, stderr)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	pw, err := c.Password(ctx)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, pw)
	return err
}

// ndesTemporary reports whether a failed fetch from the admin page may
// succeed later (an HTTP 5xx from IIS, a KDC that did not answer), beyond
// what scepclient.IsTransient already knows (network errors and timeouts).
func ndesTemporary(err error) bool {
	var pe *ndes.PageError
	var ke *ndes.KerberosError
	return errors.As(err, &pe) && pe.Temporary() || errors.As(err, &ke) && ke.Temporary()
}
