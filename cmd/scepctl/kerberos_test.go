package main

import (
	"encoding/pem"
	"regexp"
	"strings"
	"testing"

	"github.com/scep-operator/scep-operator/test/mitkdc"
	"github.com/scep-operator/scep-operator/test/ndes"
)

// TestNDESPasswordKerberos runs ndes-password --auth kerberos against the
// NDES emulator (NTLM off, Extended Protection required) with tickets from
// a real MIT KDC.
func TestNDESPasswordKerberos(t *testing.T) {
	kdc := mitkdc.Start(t, mitkdc.Options{})
	kdc.AddUser(t, ndes.DefaultUsername, ndes.DefaultPassword)
	srv := ndes.Start(t, ndes.Options{TLS: true, Kerberos: &ndes.Kerberos{Keytab: kdc.AddService(t, "HTTP/127.0.0.1"), NoNTLM: true, ExtendedProtection: "Require"}})
	bundle := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.HTTP.Certificate().Raw})))
	good := writeFile(t, "pw", ndes.DefaultPassword+"\n")
	const wrongPassword = "Wr0ng-Passw0rd"
	wrong := writeFile(t, "wrong", wrongPassword)
	keytab := writeFile(t, "svc.keytab", string(kdc.Keytab(t, ndes.DefaultUsername)))
	krb5Conf := writeFile(t, "krb5.conf", kdc.Krb5Conf())
	base := []string{"ndes-password", "--url", srv.AdminURL, "--auth", "kerberos", "--ca-bundle", bundle}
	password := regexp.MustCompile(`^[0-9A-F]{16}\n$`)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"password, realm and KDC", []string{"--username", ndes.DefaultUsername, "--password-file", good, "--realm", kdc.Realm, "--kdc", kdc.Addr}},
		{"keytab and krb5.conf", []string{"--username", ndes.DefaultUsername + "@" + kdc.Realm, "--keytab", keytab, "--krb5-conf", krb5Conf, "--spn", "HTTP/127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append(base, tc.args...)...)
			if code != 0 || !password.MatchString(stdout) {
				t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
			}
			if got := srv.Counters().LastAuthScheme; got != "Negotiate (Kerberos)" {
				t.Fatalf("authenticated with %q", got)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		code, stdout, stderr := runCLI(append(base, "--username", ndes.DefaultUsername, "--password-file", wrong, "--realm", kdc.Realm, "--kdc", kdc.Addr)...)
		if code != 1 || stdout != "" || !strings.Contains(stderr, "KDC refused the password") || strings.Contains(stderr, wrongPassword) {
			t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no KDC", []string{"--username", "u", "--password-file", good, "--realm", kdc.Realm}, "needs --kdc or --krb5-conf"},
		{"no password or keytab", []string{"--username", "u", "--kdc", kdc.Addr}, "(or --keytab) go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(append(base, tc.args...)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %s; want usage error %q", code, stderr, tc.want)
			}
		})
	}
	t.Run("Kerberos options without --auth kerberos", func(t *testing.T) {
		code, _, stderr := runCLI("ndes-password", "--url", srv.AdminURL, "--username", "u", "--password-file", good, "--kdc", kdc.Addr)
		if code != 2 || !strings.Contains(stderr, "take --auth kerberos") {
			t.Fatalf("exit %d, stderr %s", code, stderr)
		}
	})
}
