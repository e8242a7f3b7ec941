package ndes

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	ndesemu "github.com/scep-operator/scep-operator/test/ndes"
)

// These tests run the client against test/ndes, an NDES emulator written
// from the protocol (full NTLMv2 with MIC, per-connection handshakes, IIS's
// connection persistence), not from this package.

var ndesPasswordForm = regexp.MustCompile(`^[0-9A-F]{16}$`)

func emulatorClient(t *testing.T, s *ndesemu.Server, logs *logSink, change func(c *Config)) *Client {
	t.Helper()
	cfg := Config{
		URL:      s.AdminURL,
		Username: ndesemu.DefaultDomain + `\` + ndesemu.DefaultUsername,
		Password: ndesemu.DefaultPassword,
		Timeout:  10 * time.Second,
		Logger:   logs.logger(),
		// The emulator speaks plain http.
		AllowPlainHTTP: true,
	}
	if change != nil {
		change(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestEmulatorNTLM(t *testing.T) {
	for _, tc := range []struct {
		name           string
		opts           ndesemu.Options
		user           string
		wantHandshakes int
	}{
		{name: `DOMAIN\user, connection stays authenticated`, opts: ndesemu.Options{OfferNegotiate: true}, wantHandshakes: 1},
		{name: "user@domain", user: ndesemu.DefaultUsername + "@corp.example.test", wantHandshakes: 1},
		{name: "every request authenticates anew", opts: ndesemu.Options{AuthPersistSingleRequest: true}, wantHandshakes: 3},
		{name: "NTLM or Basic offered", opts: ndesemu.Options{Auth: ndesemu.AuthBoth}, wantHandshakes: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ndesemu.Start(t, tc.opts)
			logs := &logSink{}
			c := emulatorClient(t, s, logs, func(c *Config) {
				if tc.user != "" {
					c.Username = tc.user
				}
			})
			seen := map[string]bool{}
			for range 3 {
				pw, err := c.Password(context.Background())
				if err != nil {
					t.Fatalf("Password: %v (emulator: %s)", err, s.Counters().LastAuthFailure)
				}
				if !ndesPasswordForm.MatchString(pw) || strings.Contains(s.Thumbprint, strings.ToLower(pw)) || seen[pw] {
					t.Fatalf("password %q: not 16 hex digits, the thumbprint %q, or seen before", pw, s.Thumbprint)
				}
				seen[pw] = true
			}
			got := s.Counters()
			if got.PasswordPages != 3 || s.UnusedPasswords() != 3 || got.AuthChallenges != tc.wantHandshakes {
				t.Errorf("counters %+v, %d unused; want 3 password pages and %d handshakes", got, s.UnusedPasswords(), tc.wantHandshakes)
			}
			if !strings.EqualFold(got.LastAuthUser, `CORP\svc-scep`) {
				t.Errorf("authenticated as %q", got.LastAuthUser)
			}
			for pw := range seen {
				assertNoSecrets(t, "logs", logs.String(), pw, ndesemu.DefaultPassword)
			}
		})
	}
}

func TestEmulatorPageEncodings(t *testing.T) {
	for _, enc := range []struct {
		name string
		enc  ndesemu.Encoding
		ct   string
	}{
		{"UTF-16LE", ndesemu.UTF16LE, ""},
		{"UTF-16LE BOM", ndesemu.UTF16LEBOM, ""},
		{"UTF-16BE", ndesemu.UTF16BE, ""},
		{"UTF-16BE BOM", ndesemu.UTF16BEBOM, ""},
		{"UTF-8", ndesemu.UTF8, "text/html; charset=utf-8"},
		{"UTF-16LE labelled UTF-16", ndesemu.UTF16LE, "text/html; charset=utf-16"},
	} {
		t.Run(enc.name, func(t *testing.T) {
			s := ndesemu.Start(t, ndesemu.Options{PageEncoding: enc.enc, ContentType: enc.ct})
			pw, err := emulatorClient(t, s, &logSink{}, nil).Password(context.Background())
			if err != nil || !ndesPasswordForm.MatchString(pw) {
				t.Fatalf("Password = %q, %v", pw, err)
			}
		})
	}
}

func TestEmulatorRefusals(t *testing.T) {
	const internPassword = "Intern-Pa55!"
	for _, tc := range []struct {
		name   string
		opts   ndesemu.Options
		change func(c *Config)
		check  func(t *testing.T, err error)
	}{
		{
			name:   "wrong password",
			change: func(c *Config) { c.Password = "Not-" + ndesemu.DefaultPassword },
			check: func(t *testing.T, err error) {
				var ae *AuthError
				if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || ae.User != `CORP\svc-scep` {
					t.Fatalf("Password: %v; want *AuthError 401 for CORP\\svc-scep", err)
				}
			},
		},
		{
			name:   "unknown domain",
			change: func(c *Config) { c.Username = `OTHER\svc-scep` },
			check: func(t *testing.T, err error) {
				if !IsAuthError(err) {
					t.Fatalf("Password: %v; want an *AuthError", err)
				}
			},
		},
		{
			name:   "account without permission",
			opts:   ndesemu.Options{Users: map[string]string{"intern": internPassword}, AllowedUsers: []string{"svc-scep"}},
			change: func(c *Config) { c.Username, c.Password = `CORP\intern`, internPassword },
			check: func(t *testing.T, err error) {
				var ae *AuthError
				if !errors.As(err, &ae) || ae.StatusCode != http.StatusOK || !strings.Contains(err.Error(), "sufficient permission") || !strings.Contains(err.Error(), `CORP\intern`) {
					t.Fatalf("Password: %v; want NDES's permission page as an *AuthError naming CORP\\intern", err)
				}
			},
		},
		{
			name:  "Basic-only server",
			opts:  ndesemu.Options{Auth: ndesemu.AuthBasic},
			check: wantErrorSaying("offers Basic, not NTLM"),
		},
		{
			name:   "NTLM-only server asked with Basic",
			opts:   ndesemu.Options{TLS: true},
			change: func(c *Config) { c.Auth, c.InsecureSkipVerify = AuthBasic, true },
			check:  wantErrorSaying("offers NTLM, not Basic"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ndesemu.Start(t, tc.opts)
			logs := &logSink{}
			_, err := emulatorClient(t, s, logs, tc.change).Password(context.Background())
			tc.check(t, err)
			for _, secret := range []string{ndesemu.DefaultPassword, internPassword} {
				assertNoSecrets(t, "error", err.Error(), secret)
				assertNoSecrets(t, "logs", logs.String(), secret)
			}
			if n := s.Counters().PasswordsIssued; n != 0 {
				t.Errorf("%d passwords issued to a refused account", n)
			}
		})
	}
}

func wantErrorSaying(s string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Fatalf("Password: %v; want an error saying %q", err, s)
		}
	}
}

func TestEmulatorCacheFull(t *testing.T) {
	s := ndesemu.Start(t, ndesemu.Options{CacheSize: 2})
	c := emulatorClient(t, s, &logSink{}, nil)
	for range 2 {
		if _, err := c.Password(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Password(context.Background())
	if !IsCacheFull(err) || !strings.Contains(err.Error(), s.AdminURL) {
		t.Fatalf("third Password: %v; want ErrCacheFull naming the page", err)
	}
}

func TestEmulatorRedirectAndTLS(t *testing.T) {
	t.Run("mscep_admin without its slash", func(t *testing.T) {
		s := ndesemu.Start(t, ndesemu.Options{})
		c := emulatorClient(t, s, &logSink{}, func(c *Config) { c.URL = strings.TrimSuffix(s.AdminURL, "/") })
		if _, err := c.Password(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	for _, auth := range []Auth{AuthNTLM, AuthBasic} {
		t.Run(string(auth)+" over https with a CA bundle", func(t *testing.T) {
			s := ndesemu.Start(t, ndesemu.Options{TLS: true, Auth: ndesemu.AuthBoth})
			roots := x509.NewCertPool()
			roots.AddCert(s.HTTP.Certificate())
			c := emulatorClient(t, s, &logSink{}, func(c *Config) { c.Auth, c.RootCAs = auth, roots })
			if _, err := c.Password(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := s.Counters().LastAuthScheme; got != string(auth) {
				t.Errorf("authenticated with %q, want %q", got, auth)
			}
		})
	}
}

func TestEmulatorConcurrent(t *testing.T) {
	s := ndesemu.Start(t, ndesemu.Options{CacheSize: -1})
	c := emulatorClient(t, s, &logSink{}, nil)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	for range 10 {
		wg.Go(func() {
			pw, err := c.Password(context.Background())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			seen[pw] = true
		})
	}
	wg.Wait()
	if len(seen) != 10 || s.Counters().AuthChallenges != 1 {
		t.Errorf("%d distinct passwords, %d handshakes; want 10 and 1", len(seen), s.Counters().AuthChallenges)
	}
}
