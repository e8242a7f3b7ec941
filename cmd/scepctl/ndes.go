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

	urlFlag, usernameFlag, passwordFileFlag, authFlag, allowPlainHTTPFlag string
}

func (f *ndesFlags) register(fs *flag.FlagSet, urlFlag, prefix string) {
	f.urlFlag, f.usernameFlag, f.passwordFileFlag, f.authFlag, f.allowPlainHTTPFlag = urlFlag, prefix+"username", prefix+"password-file", prefix+"auth", prefix+"allow-plain-http"
	fs.StringVar(&f.url, f.urlFlag, "", "NDES admin page, e.g. https://ndes.corp/certsrv/mscep_admin/")
	fs.StringVar(&f.username, f.usernameFlag, "", `account allowed to request challenge passwords: DOMAIN\user or user@domain`)
	fs.StringVar(&f.passwordFile, f.passwordFileFlag, "", "file holding the account's password")
	fs.StringVar(&f.auth, f.authFlag, "", "how IIS authenticates the account: ntlm (default) or basic")
	fs.BoolVar(&f.allowPlainHTTP, f.allowPlainHTTPFlag, false, "allow an http:// admin page: the account's credentials then cross the network unprotected (NTLM can be relayed, Basic read); test servers only")
}

// given reports whether any of the flags was set.
func (f *ndesFlags) given() bool {
	return f.url != "" || f.username != "" || f.passwordFile != "" || f.auth != ""
}

// client checks the flags and returns a client for the admin page, trusting
// it as sf says.
func (f *ndesFlags) client(sf *serverFlags, stderr io.Writer) (*ndes.Client, error) {
	if f.url == "" || f.username == "" || f.passwordFile == "" {
		return nil, fmt.Errorf("%w: --%s, --%s and --%s go together", errUsage, f.urlFlag, f.usernameFlag, f.passwordFileFlag)
	}
	auth, err := ndes.ParseAuth(f.auth)
	if err != nil {
		return nil, fmt.Errorf("%w: --%s: %v", errUsage, f.authFlag, err)
	}
	b, err := os.ReadFile(f.passwordFile)
	if err != nil {
		return nil, fmt.Errorf("reading --%s: %w", f.passwordFileFlag, err)
	}
	password := strings.TrimRight(string(b), "\r\n")
	if password == "" {
		return nil, fmt.Errorf("%w: --%s %s is empty", errUsage, f.passwordFileFlag, f.passwordFile)
	}
	roots, err := sf.rootCAs()
	if err != nil {
		return nil, err
	}
	c, err := ndes.New(ndes.Config{
		URL: f.url, Auth: auth, Username: f.username, Password: password, AllowPlainHTTP: f.allowPlainHTTP,
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
// succeed later (an HTTP 5xx from IIS), beyond what scepclient.IsTransient
// already knows (network errors and timeouts).
func ndesTemporary(err error) bool {
	var pe *ndes.PageError
	return errors.As(err, &pe) && pe.Temporary()
}
