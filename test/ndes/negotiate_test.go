package ndes

import (
	"net/http"
	"strings"
	"testing"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/scep-operator/scep-operator/test/mitkdc"
)

// TestKerberosAdminPage presents tickets built by gokrb5's own SPNEGO client
// (which sends no channel binding) from a real MIT KDC to the emulator.
func TestKerberosAdminPage(t *testing.T) {
	kdc := mitkdc.Start(t, mitkdc.Options{})
	kdc.AddUser(t, DefaultUsername, DefaultPassword)
	serviceKeytab := kdc.AddService(t, "HTTP/127.0.0.1")
	kdc.AddService(t, "HTTP/other.example.test")
	conf, err := config.NewFromString(kdc.Krb5Conf())
	if err != nil {
		t.Fatal(err)
	}
	cl := client.NewWithPassword(DefaultUsername, kdc.Realm, DefaultPassword, conf, client.DisablePAFXFAST(true))
	if err := cl.Login(); err != nil {
		t.Fatalf("login: %v\n%s", err, kdc.Log())
	}
	t.Cleanup(cl.Destroy)

	get := func(t *testing.T, s *Server, spn string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, s.AdminURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if spn != "" {
			if err := spnego.SetSPNEGOHeader(cl, req, spn); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := s.HTTP.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	t.Run("accepts a ticket for its SPN", func(t *testing.T) {
		s := Start(t, Options{Kerberos: &Kerberos{Keytab: serviceKeytab}})
		if resp := get(t, s, "HTTP/127.0.0.1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP %d: %s", resp.StatusCode, s.Counters().LastAuthFailure)
		}
		if c := s.Counters(); c.LastAuthScheme != "Negotiate (Kerberos)" || c.LastAuthUser != DefaultDomain+`\`+DefaultUsername || c.PasswordPages != 1 {
			t.Fatalf("counters %+v", c)
		}
	})
	t.Run("refuses a ticket for another SPN", func(t *testing.T) {
		s := Start(t, Options{Kerberos: &Kerberos{Keytab: serviceKeytab}})
		if resp := get(t, s, "HTTP/other.example.test"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
		if got := s.Counters().LastAuthFailure; !strings.Contains(got, "not HTTP/127.0.0.1") {
			t.Fatalf("refused for %q", got)
		}
	})
	t.Run("Extended Protection Require refuses a ticket without binding", func(t *testing.T) {
		s := Start(t, Options{TLS: true, Kerberos: &Kerberos{Keytab: serviceKeytab, ExtendedProtection: "Require"}})
		if resp := get(t, s, "HTTP/127.0.0.1"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
		if got := s.Counters().LastAuthFailure; !strings.Contains(got, "no channel binding") {
			t.Fatalf("refused for %q", got)
		}
	})
	t.Run("offers", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			k    Kerberos
			want []string
		}{
			{"Negotiate before NTLM", Kerberos{Keytab: serviceKeytab}, []string{"Negotiate", "NTLM"}},
			{"NTLM turned off", Kerberos{Keytab: serviceKeytab, NoNTLM: true}, []string{"Negotiate"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				k := tc.k
				s := Start(t, Options{Kerberos: &k})
				resp := get(t, s, "")
				if got := resp.Header.Values("WWW-Authenticate"); strings.Join(got, ",") != strings.Join(tc.want, ",") {
					t.Fatalf("offers %q, want %q", got, tc.want)
				}
			})
		}
	})
}
