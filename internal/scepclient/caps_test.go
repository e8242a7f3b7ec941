package scepclient

import (
	"net"
	"net/http"
	"testing"

	"github.com/scep-operator/scep-operator/internal/scep"
)

// TestCapsFromOldNDES: a GetCACaps answered by a closed connection or an
// empty body (NDES 2003/2008 without the hotfix) is "no capabilities"; a
// server that is not there at all stays an error.
func TestCapsFromOldNDES(t *testing.T) {
	closing := startServer(t, func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_ = conn.Close()
	})
	empty := startServer(t, func(http.ResponseWriter, *http.Request) {})
	for name, url := range map[string]string{"closed": closing.URL, "empty": empty.URL} {
		c, _ := newTestClient(t, Config{URL: url})
		caps, err := c.GetCACaps(ctx(t))
		if err != nil || caps.POST() || caps.Algorithms() != scep.MinimalCapabilities().Algorithms() {
			t.Errorf("%s: caps %v, %v; want the minimal set", name, caps.Strings(), err)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + l.Addr().String()
	l.Close()
	c, _ := newTestClient(t, Config{URL: gone})
	if _, err := c.GetCACaps(ctx(t)); err == nil {
		t.Error("GetCACaps of a server that is not there: no error")
	}
}

// TestEmptyPOSTFallsBackToGET: a POST answered with an empty 200 (NDES on
// Windows Server 2012 R2) is sent again with GET, and GET is kept.
func TestEmptyPOSTFallsBackToGET(t *testing.T) {
	var methods []string
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		methods = append(methods, r.Method)
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte{0x30, 0x00})
		}
	})
	c, _ := newTestClient(t, Config{URL: s.URL})
	caps := scep.NewCapabilities(scep.CapPOSTPKIOperation)
	for range 2 {
		if body, err := c.PKIOperation(ctx(t), caps, []byte{0x30, 0}); err != nil || len(body) != 2 {
			t.Fatalf("PKIOperation: %x, %v", body, err)
		}
	}
	if len(methods) != 3 || methods[0] != http.MethodPost || methods[1] != http.MethodGet || methods[2] != http.MethodGet {
		t.Errorf("methods %v, want POST, GET, then GET only", methods)
	}
}
