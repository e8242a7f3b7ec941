package egress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func mustParse(t *testing.T, allow, deny string) *Policy {
	t.Helper()
	p, err := Parse(allow, deny)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name        string
		allow, deny string
		addr        string
		refused     bool
		says        []string
	}{
		{name: "loopback allowed by default", addr: "127.0.0.1"},
		{name: "IPv6 loopback allowed by default", addr: "::1"},
		{name: "private address allowed by default", addr: "10.20.0.15"},
		{name: "public address allowed by default", addr: "192.0.2.10"},
		{name: "cloud metadata refused", addr: "169.254.169.254", refused: true, says: []string{"169.254.169.254", "the cloud metadata service", "always refused"}},
		{name: "link-local refused", addr: "169.254.1.1", refused: true, says: []string{"169.254.0.0/16", "link-local", "a more specific network in " + AllowFlag}},
		{name: "IPv6 link-local refused", addr: "fe80::1", refused: true, says: []string{"fe80::/10"}},
		{name: "IPv6 link-local with a zone refused", addr: "fe80::1%eth0", refused: true},
		{name: "AWS IPv6 metadata refused", addr: "fd00:ec2::254", refused: true, says: []string{"fd00:ec2::254", "always refused"}},
		{name: "Alibaba metadata refused", addr: "100.100.100.200", refused: true},
		{name: "next to Alibaba metadata allowed", addr: "100.100.100.201"},
		{name: "unspecified IPv4 refused", addr: "0.0.0.0", refused: true, says: []string{"unspecified"}},
		{name: "unspecified IPv6 refused", addr: "::", refused: true},
		{name: "IPv4-mapped metadata refused", addr: "::ffff:169.254.169.254", refused: true, says: []string{"169.254.169.254"}},
		{name: "allow-list admits its networks", allow: "10.0.0.0/8", addr: "10.1.2.3"},
		{name: "allow-list refuses the rest", allow: "10.0.0.0/8", addr: "192.168.1.1", refused: true, says: []string{"192.168.1.1", "no network of " + AllowFlag}},
		{name: "allow-list refuses loopback when not listed", allow: "10.0.0.0/8", addr: "127.0.0.1", refused: true},
		{name: "a broad allow does not reopen metadata", allow: "0.0.0.0/0", addr: "169.254.169.254", refused: true},
		{name: "a precise allow reopens part of link-local", allow: "169.254.10.0/24", addr: "169.254.10.5"},
		{name: "a precise allow of link-local does not reopen metadata", allow: "169.254.0.0/16", addr: "169.254.169.254", refused: true},
		{name: "same prefix in allow and default: deny wins", allow: "169.254.0.0/16", addr: "169.254.1.1", refused: true},
		{name: "deny-list refuses", deny: "10.0.0.0/8", addr: "10.2.0.1", refused: true, says: []string{"10.0.0.0/8 of " + DenyFlag}},
		{name: "a more specific allow opens a denied network", allow: "10.1.0.0/16", deny: "10.0.0.0/8", addr: "10.1.0.1"},
		{name: "deny-list of an address", deny: "127.0.0.1", addr: "127.0.0.1", refused: true},
		{name: "mapped deny prefix applies to IPv4", deny: "::ffff:10.0.0.0/104", addr: "10.3.3.3", refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParse(t, tc.allow, tc.deny)
			err := p.Check(netip.MustParseAddr(tc.addr))
			if (err != nil) != tc.refused {
				t.Fatalf("Check(%s) = %v, want refused %v", tc.addr, err, tc.refused)
			}
			if err == nil {
				return
			}
			if !IsRefused(err) {
				t.Errorf("%T is not a *RefusedError", err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
	var zero *Policy
	if err := zero.Check(netip.MustParseAddr("169.254.169.254")); err != nil {
		t.Errorf("a nil Policy refused: %v", err)
	}
}

func TestParse(t *testing.T) {
	got, err := ParseCIDRs(" 10.0.0.0/8, ,192.0.2.7,fd00::/8 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "fd00::/8"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseCIDRs = %v, want %v", got, want)
	}
	if got, _ := ParseCIDRs("10.1.2.3/8"); got[0].String() != "10.0.0.0/8" {
		t.Errorf("not masked: %v", got)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.0/8;", "::1/200"} {
		if _, err := ParseCIDRs(bad); err == nil {
			t.Errorf("ParseCIDRs(%q) accepted", bad)
		}
	}
	if _, err := Parse("nonsense", ""); err == nil || !strings.Contains(err.Error(), AllowFlag) {
		t.Errorf("Parse allow error %v does not name %s", err, AllowFlag)
	}
	if _, err := Parse("", "nonsense"); err == nil || !strings.Contains(err.Error(), DenyFlag) {
		t.Errorf("Parse deny error %v does not name %s", err, DenyFlag)
	}
}

// countingServer counts the requests that reach it.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestDialRefusedAfterResolution: the dialer checks the address a name
// resolves to, so a name cannot hide a refused address (DNS rebinding
// included: the check is on the connection, not on a lookup before it).
// "localhost" stands for a name resolving to a refused address, here
// loopback refused by the deny list; nothing reaches the server.
func TestDialRefusedAfterResolution(t *testing.T) {
	srv, hits := countingServer(t, nil)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p := mustParse(t, "", "127.0.0.0/8,::1")
	client := &http.Client{Transport: p.Secure(&http.Transport{})}
	_, err := client.Get("http://localhost:" + port + "/")
	if err == nil || !IsRefused(err) {
		t.Fatalf("GET = %v, want a refusal", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1") && !strings.Contains(err.Error(), "::1") {
		t.Errorf("%q does not name the refused address", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server saw %d requests", n)
	}
	// The control: the default policy lets the same request through.
	client = &http.Client{Transport: Default().Secure(&http.Transport{})}
	resp, err := client.Get("http://localhost:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := hits.Load(); n != 1 {
		t.Errorf("the server saw %d requests, want 1", n)
	}
}

// TestProxyDestinationChecked: through a proxy the operator only dials the
// proxy, so an IP-literal destination is checked before it is handed over.
func TestProxyDestinationChecked(t *testing.T) {
	proxy, hits := countingServer(t, nil)
	proxyURL, _ := url.Parse(proxy.URL)
	tr := Default().Secure(&http.Transport{Proxy: http.ProxyURL(proxyURL)})
	_, err := (&http.Client{Transport: tr}).Get("http://169.254.169.254/latest/meta-data/")
	if err == nil || !IsRefused(err) || !strings.Contains(err.Error(), "169.254.169.254") {
		t.Fatalf("GET through the proxy = %v, want a refusal", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the proxy saw %d requests", n)
	}
	// A permitted destination goes through the proxy.
	resp, err := (&http.Client{Transport: tr}).Get("http://192.0.2.1/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := hits.Load(); n != 1 {
		t.Errorf("the proxy saw %d requests, want 1", n)
	}
}

func TestCheckHost(t *testing.T) {
	p := Default()
	for host, refused := range map[string]bool{
		"169.254.169.254":  true,
		"[fd00:ec2::254]":  true,
		"fd00:ec2::254":    true,
		"ndes.corp.local":  false, // names are for the dialer
		"127.0.0.1":        false,
		"metadata.invalid": false,
	} {
		if err := p.CheckHost(host); (err != nil) != refused {
			t.Errorf("CheckHost(%s) = %v, want refused %v", host, err, refused)
		}
	}
}

func TestSameOriginRedirects(t *testing.T) {
	other, otherHits := countingServer(t, nil)
	var hops atomic.Int32
	var self *httptest.Server
	self = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/other-host":
			http.Redirect(w, r, other.URL+"/final", http.StatusFound)
		case "/other-port":
			u, _ := url.Parse(other.URL)
			http.Redirect(w, r, "http://127.0.0.1:"+u.Port()+"/final", http.StatusFound)
		case "/other-scheme":
			http.Redirect(w, r, strings.Replace(self.URL, "http://", "https://", 1)+"/final", http.StatusFound)
		case "/loop":
			hops.Add(1)
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/final":
			fmt.Fprint(w, "final")
		}
	}))
	t.Cleanup(self.Close)
	client := &http.Client{CheckRedirect: SameOriginRedirects("the SCEP server", 0)}
	resp, err := client.Get(self.URL + "/same")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("same-host redirect: %v", err)
	}
	resp.Body.Close()
	for _, path := range []string{"/other-host", "/other-port", "/other-scheme"} {
		_, err := client.Get(self.URL + path)
		var re *RedirectError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "only redirects to the same scheme and host") {
			t.Errorf("%s: %v, want a *RedirectError", path, err)
		}
	}
	if n := otherHits.Load(); n != 0 {
		t.Errorf("the other host saw %d requests", n)
	}
	_, err = client.Get(self.URL + "/loop")
	if err == nil || !strings.Contains(err.Error(), "more than 3 times") {
		t.Errorf("redirect loop: %v", err)
	}
	if n := hops.Load(); n != MaxRedirects+1 {
		t.Errorf("%d requests in the loop, want %d (the first and %d redirects)", n, MaxRedirects+1, MaxRedirects)
	}
}

func TestHostPortDefaults(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"http://ndes/x", "http://ndes:80/y"},
		{"https://NDES.corp/x", "https://ndes.corp:443/y"},
	} {
		ua, _ := url.Parse(tc.a)
		ub, _ := url.Parse(tc.b)
		if !strings.EqualFold(hostPort(ua), hostPort(ub)) {
			t.Errorf("%s and %s differ: %s, %s", tc.a, tc.b, hostPort(ua), hostPort(ub))
		}
	}
}
