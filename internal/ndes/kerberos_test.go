package ndes

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scep-operator/scep-operator/test/mitkdc"
	ndesemu "github.com/scep-operator/scep-operator/test/ndes"
)

// These tests get real tickets from a real MIT KDC (test/mitkdc, krb5kdc
// started per test on loopback) and present them to the NDES emulator,
// which checks them with the keytab of its SPN, the way IIS does.

const krbUser = ndesemu.DefaultUsername

// kerberosRealm is a KDC with the admin page's service principal (SPN
// HTTP/127.0.0.1, the emulator's host) and the page's account, whose
// password is the emulator's NTLM password too (one AD account).
func kerberosRealm(t *testing.T, opts mitkdc.Options) (*mitkdc.KDC, []byte) {
	t.Helper()
	kdc := mitkdc.Start(t, opts)
	kdc.AddUser(t, krbUser, ndesemu.DefaultPassword)
	return kdc, kdc.AddService(t, "HTTP/127.0.0.1")
}

// kerberosNDES is an emulator over https whose IIS has NTLM turned off and
// Extended Protection required, unless change says otherwise.
func kerberosNDES(t *testing.T, serviceKeytab []byte, change func(o *ndesemu.Options)) *ndesemu.Server {
	t.Helper()
	o := ndesemu.Options{TLS: true, Kerberos: &ndesemu.Kerberos{Keytab: serviceKeytab, NoNTLM: true, ExtendedProtection: "Require"}}
	if change != nil {
		change(&o)
	}
	return ndesemu.Start(t, o)
}

func kerberosClient(t *testing.T, s *ndesemu.Server, kdc *mitkdc.KDC, logs *logSink, change func(c *Config)) (*Client, error) {
	t.Helper()
	roots := x509.NewCertPool()
	if cert := s.HTTP.Certificate(); cert != nil {
		roots.AddCert(cert)
	}
	cfg := Config{
		URL:      s.AdminURL,
		Auth:     AuthKerberos,
		Username: krbUser,
		Password: ndesemu.DefaultPassword,
		Kerberos: &Kerberos{Realm: kdc.Realm, KDCs: []string{kdc.Addr}},
		RootCAs:  roots,
		Timeout:  20 * time.Second,
		Logger:   logs.logger(),
	}
	if change != nil {
		change(&cfg)
	}
	c, err := New(cfg)
	if c != nil {
		t.Cleanup(c.CloseIdleConnections)
	}
	return c, err
}

func TestKerberosLogsIn(t *testing.T) {
	kdc, serviceKeytab := kerberosRealm(t, mitkdc.Options{})
	userKeytab := kdc.Keytab(t, krbUser)
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		opts   func(o *ndesemu.Options)
	}{
		{name: "password, realm and KDC given, SPN derived"},
		{name: "user@REALM and a krb5.conf", change: func(c *Config) {
			c.Username = krbUser + "@" + kdc.Realm
			c.Kerberos = &Kerberos{Krb5Conf: kdc.Krb5Conf()}
		}},
		{name: `DOMAIN\user reads as user`, change: func(c *Config) { c.Username = ndesemu.DefaultDomain + `\` + krbUser }},
		{name: "keytab instead of password", change: func(c *Config) {
			c.Password = ""
			c.Kerberos.Keytab = userKeytab
		}},
		{name: "SPN given", change: func(c *Config) { c.Kerberos.SPN = "HTTP/ndes01.corp.example.test" },
			opts: func(o *ndesemu.Options) { o.Kerberos.SPN = "HTTP/ndes01.corp.example.test" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "SPN given" {
				kdc.AddService(t, "HTTP/ndes01.corp.example.test")
			}
			keytab := serviceKeytab
			if tc.name == "SPN given" {
				keytab = kdc.Keytab(t, "HTTP/ndes01.corp.example.test")
			}
			s := kerberosNDES(t, keytab, tc.opts)
			logs := &logSink{}
			c, err := kerberosClient(t, s, kdc, logs, tc.change)
			if err != nil {
				t.Fatal(err)
			}
			pw, err := c.Password(context.Background())
			if err != nil {
				t.Fatalf("Password: %v\nKDC log:\n%s", err, kdc.Log())
			}
			if !ndesPasswordForm.MatchString(pw) {
				t.Fatalf("password %q", pw)
			}
			got := s.Counters()
			if got.LastAuthScheme != "Negotiate (Kerberos)" || got.LastAuthUser != ndesemu.DefaultDomain+`\`+krbUser {
				t.Fatalf("emulator saw %q as %q (last failure %q)", got.LastAuthUser, got.LastAuthScheme, got.LastAuthFailure)
			}
			if strings.Contains(logs.String(), ndesemu.DefaultPassword) || strings.Contains(logs.String(), pw) {
				t.Fatal("a password reached the logs")
			}
		})
	}
}

func TestKerberosRefusals(t *testing.T) {
	kdc, serviceKeytab := kerberosRealm(t, mitkdc.Options{})
	kdc.AddUser(t, "expired", ndesemu.DefaultPassword, "-pwexpire yesterday")
	kdc.AddUser(t, "disabled", ndesemu.DefaultPassword, "-allow_tix")
	for _, tc := range []struct {
		name, user, password string
		want                 string
	}{
		{name: "wrong password", user: krbUser, password: "not-the-password", want: "the KDC refused the password"},
		{name: "unknown principal", user: "nobody", password: "x", want: "does not know the principal"},
		{name: "expired password", user: "expired", password: ndesemu.DefaultPassword, want: "password has expired"},
		{name: "disabled account", user: "disabled", password: ndesemu.DefaultPassword, want: "disabled or locked out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// NTLM is on at IIS and allowed by the profile: a refusal by
			// the KDC must still not try it.
			s := kerberosNDES(t, serviceKeytab, func(o *ndesemu.Options) { o.Kerberos.NoNTLM = false })
			c, err := kerberosClient(t, s, kdc, &logSink{}, func(c *Config) {
				c.Username, c.Password = tc.user, tc.password
				c.Kerberos.AllowNTLMFallback = true
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Password(context.Background())
			var ae *AuthError
			if !errors.As(err, &ae) || !ae.Kerberos || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a Kerberos AuthError saying %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), tc.password) {
				t.Fatal("the error repeats the password")
			}
			if got := s.Counters(); got.AdminRequests != 1 || got.AuthChallenges != 0 || got.LastAuthScheme != "" {
				t.Fatalf("after the KDC's refusal something else was tried: %+v", got)
			}
		})
	}
}

func TestKerberosKDCDown(t *testing.T) {
	kdc, serviceKeytab := kerberosRealm(t, mitkdc.Options{})
	s := kerberosNDES(t, serviceKeytab, nil)
	c, err := kerberosClient(t, s, kdc, &logSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kdc.Stop()
	_, err = c.Password(context.Background())
	var ke *KerberosError
	if !errors.As(err, &ke) || !ke.Temporary() || !strings.Contains(err.Error(), "no KDC answered") || IsAuthError(err) {
		t.Fatalf("want a temporary KerberosError, got %v", err)
	}
	// The next attempt, once the KDC is back, logs in.
	if err := kdc.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Password(context.Background()); err != nil {
		t.Fatalf("after the KDC came back: %v", err)
	}
}

func TestKerberosClockSkew(t *testing.T) {
	kdc, serviceKeytab := kerberosRealm(t, mitkdc.Options{ClockOffset: -2 * time.Hour})
	s := kerberosNDES(t, serviceKeytab, nil)
	c, err := kerberosClient(t, s, kdc, &logSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Password(context.Background())
	var ke *KerberosError
	if !errors.As(err, &ke) || ke.Temporary() || !strings.Contains(err.Error(), "clock") || IsAuthError(err) {
		t.Fatalf("want a KerberosError about the clocks, got %v\nKDC log:\n%s", err, kdc.Log())
	}
}

func TestKerberosFallbackAndOffers(t *testing.T) {
	kdc, serviceKeytab := kerberosRealm(t, mitkdc.Options{})
	ntlmUser := krbUser + "@" + strings.ToLower(kdc.Realm)
	t.Run("IIS offers only NTLM, no fallback allowed", func(t *testing.T) {
		s := ndesemu.Start(t, ndesemu.Options{TLS: true})
		c, err := kerberosClient(t, s, kdc, &logSink{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Password(context.Background())
		if !IsAuthError(err) || !strings.Contains(err.Error(), "offers NTLM, not Kerberos") {
			t.Fatalf("want the offered schemes named, got %v", err)
		}
	})
	// fallsBackToNTLM fetches a password from s with the fallback allowed
	// and checks that NTLM got it.
	fallsBackToNTLM := func(t *testing.T, s *ndesemu.Server, kdc *mitkdc.KDC) {
		t.Helper()
		c, err := kerberosClient(t, s, kdc, &logSink{}, func(c *Config) {
			c.Username = ntlmUser
			c.Kerberos.AllowNTLMFallback = true
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Password(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := s.Counters().LastAuthScheme; got != "NTLM" {
			t.Fatalf("authenticated with %q, want NTLM", got)
		}
	}
	t.Run("IIS offers only NTLM, fallback allowed", func(t *testing.T) {
		fallsBackToNTLM(t, ndesemu.Start(t, ndesemu.Options{TLS: true}), kdc)
	})
	t.Run("KDC down, fallback allowed", func(t *testing.T) {
		down := mitkdc.Start(t, mitkdc.Options{})
		down.Stop()
		fallsBackToNTLM(t, kerberosNDES(t, serviceKeytab, func(o *ndesemu.Options) { o.Kerberos.NoNTLM = false }), down)
	})
	t.Run("SPN unknown to the KDC", func(t *testing.T) {
		s := kerberosNDES(t, serviceKeytab, nil)
		c, err := kerberosClient(t, s, kdc, &logSink{}, func(c *Config) { c.Kerberos.SPN = "HTTP/unknown.corp.example.test" })
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Password(context.Background())
		if !IsKerberosError(err) || !strings.Contains(err.Error(), "setspn") {
			t.Fatalf("want the SPN named with setspn, got %v", err)
		}
	})
	t.Run("Extended Protection required, plain http carries no binding", func(t *testing.T) {
		s := kerberosNDES(t, serviceKeytab, func(o *ndesemu.Options) { o.TLS = false })
		c, err := kerberosClient(t, s, kdc, &logSink{}, func(c *Config) { c.AllowPlainHTTP = true })
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Password(context.Background())
		if !IsAuthError(err) || !strings.Contains(err.Error(), "refused the Kerberos ticket for HTTP/127.0.0.1") {
			t.Fatalf("want IIS's refusal of the ticket, got %v", err)
		}
		if got := s.Counters().LastAuthFailure; !strings.Contains(got, "channel binding") {
			t.Fatalf("emulator refused for %q", got)
		}
	})
}

// TestKerberosChannelBindingDefeatsTLSProxy puts a TLS-terminating proxy,
// trusted by the client but with a certificate of its own, between the
// client and the admin page: the ticket is bound to the proxy's
// certificate, and the page, with Extended Protection, refuses it. This
// is the relay that binding exists to stop.
func TestKerberosChannelBindingDefeatsTLSProxy(t *testing.T) {
	kdc, serviceKeytab := kerberosRealm(t, mitkdc.Options{})
	s := kerberosNDES(t, serviceKeytab, func(o *ndesemu.Options) { o.Kerberos.ExtendedProtection = "Allow" })
	target, err := url.Parse(s.HTTP.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = s.HTTP.Client().Transport
	proxy := httptest.NewUnstartedServer(rp)
	proxyCert := selfSignedLoopbackCert(t)
	proxy.TLS = &tls.Config{Certificates: []tls.Certificate{proxyCert}, MinVersion: tls.VersionTLS12}
	proxy.StartTLS()
	t.Cleanup(proxy.Close)
	roots := x509.NewCertPool()
	roots.AddCert(proxyCert.Leaf)

	c, err := kerberosClient(t, s, kdc, &logSink{}, func(c *Config) {
		c.URL = proxy.URL + "/certsrv/mscep_admin/"
		c.RootCAs = roots
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Password(context.Background())
	if !IsAuthError(err) || !strings.Contains(err.Error(), "terminates TLS") {
		t.Fatalf("want IIS's refusal of a ticket bound to another certificate, got %v", err)
	}
	if got := s.Counters().LastAuthFailure; !strings.Contains(got, "does not match") {
		t.Fatalf("emulator refused for %q", got)
	}
}

// selfSignedLoopbackCert is a certificate for 127.0.0.1 unlike httptest's.
func selfSignedLoopbackCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tls proxy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestKerberosConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no realm", cfg: Config{Username: "u", Password: "p", Kerberos: &Kerberos{KDCs: []string{"127.0.0.1"}}}, want: "needs a realm"},
		{name: "no KDC", cfg: Config{Username: "u", Password: "p", Kerberos: &Kerberos{Realm: "R"}}, want: "no KDC for realm R"},
		{name: "no password or keytab", cfg: Config{Username: "u", Kerberos: &Kerberos{Realm: "R", KDCs: []string{"k"}}}, want: "password or keytab"},
		{name: "bad keytab", cfg: Config{Username: "u", Kerberos: &Kerberos{Realm: "R", KDCs: []string{"k"}, Keytab: []byte("nope")}}, want: "keytab does not parse"},
		{name: "KDC refused by the egress policy", cfg: Config{Username: "u", Password: "p", Kerberos: &Kerberos{Realm: "R", KDCs: []string{"169.254.169.254"}}}, want: "169.254.169.254"},
		{name: "plain http", cfg: Config{URL: "http://ndes.example/certsrv/mscep_admin/", Username: "u", Password: "p", Kerberos: &Kerberos{Realm: "R", KDCs: []string{"k"}}}, want: "replay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Auth = AuthKerberos
			if cfg.URL == "" {
				cfg.URL = "https://ndes.example/certsrv/mscep_admin/"
			}
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
		})
	}
}
