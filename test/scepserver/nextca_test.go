package scepserver

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/smallstep/pkcs7"
)

// TestAnnounceNextCA: GetCACaps lists GetNextCACert once a next CA is
// announced; GetNextCACert answers it in a degenerate PKCS#7 inside a
// SignedData that the current CA signed (read here with pkcs7 alone, not
// the operator's client); RolloverCA then serves it from GetCACert.
func TestAnnounceNextCA(t *testing.T) {
	s := Start(t, Behavior{})
	if got := get(t, s, OpGetNextCACert); got.StatusCode != http.StatusNotFound {
		t.Fatalf("GetNextCACert before any announcement: HTTP %d, want 404", got.StatusCode)
	}
	old := s.CA
	next, err := s.AnnounceNextCA()
	if err != nil {
		t.Fatal(err)
	}
	if caps := body(t, get(t, s, OpGetCACaps)); !strings.Contains(caps, "GetNextCACert") {
		t.Fatalf("caps %q do not list GetNextCACert", caps)
	}
	resp := get(t, s, OpGetNextCACert)
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-x509-next-ca-cert" {
		t.Errorf("Content-Type %q", ct)
	}
	p7, err := pkcs7.Parse([]byte(body(t, resp)))
	if err != nil {
		t.Fatal(err)
	}
	p7.Certificates = append(p7.Certificates, old)
	if err := p7.Verify(); err != nil || !p7.GetOnlySigner().Equal(old) {
		t.Fatalf("the answer is not signed by the current CA: %v", err)
	}
	inner, err := pkcs7.Parse(p7.Content)
	if err != nil || len(inner.Certificates) != 1 || !inner.Certificates[0].Equal(next) {
		t.Fatalf("the content is not the next CA in a degenerate PKCS#7: %v", err)
	}
	rolled, err := s.RolloverCA()
	if err != nil || !rolled.Equal(next) || s.NextCA() != nil {
		t.Fatalf("RolloverCA switched to %v (%v), want the announced CA", rolled.Subject, err)
	}
	if caps := body(t, get(t, s, OpGetCACaps)); strings.Contains(caps, "GetNextCACert") {
		t.Errorf("caps %q still list GetNextCACert after the rollover", caps)
	}
}

func get(t *testing.T, s *Server, op string) *http.Response {
	t.Helper()
	resp, err := http.Get(s.URL + "?operation=" + op)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
