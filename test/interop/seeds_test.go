package interop

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stepca"
)

// TestWriteFuzzSeeds refreshes internal/scep/testdata/seeds with replies
// captured from a real server (MicroMDM): GetCACert, a SUCCESS CertRep and a
// FAILURE CertRep; step-ca's GetCACert and SUCCESS; the NDES-like server's
// GetCACert and PENDING. It runs only with SCEP_WRITE_SEEDS=1; the fuzz targets
// read the committed files.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SCEP_WRITE_SEEDS") != "1" {
		t.Log("set SCEP_WRITE_SEEDS=1 to rewrite internal/scep/testdata/seeds")
		return
	}
	dir := filepath.Join("..", "..", "internal", "scep", "testdata", "seeds")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := micromdm.Start(t, micromdm.Options{Challenge: "s3cret"})
	resp, err := http.Get(srv.URL + "?operation=GetCACert")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	write(t, filepath.Join(dir, "cacert-micromdm.der"), body)

	rec := &captureTransport{}
	c := newClient(t, scepclient.Config{URL: srv.URL, Transport: rec})
	info, err := c.Discover(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("seed"), ChallengePassword: "s3cret"}, key: rsaKey(t, 2048, 0)}); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "certrep-success-micromdm.der"), rec.last)
	if _, _, _, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("seed"), ChallengePassword: "wrong"}, key: rsaKey(t, 2048, 0)}); err == nil {
		t.Fatal("wrong challenge accepted")
	}
	write(t, filepath.Join(dir, "certrep-failure-micromdm.der"), rec.last)

	// step-ca: EC intermediate, RSA decrypter, DES-CBC replies.
	st := stepca.Start(t, stepca.Options{Challenge: "s3cret", IncludeRoot: true})
	rec = &captureTransport{base: st.HTTPClient().Transport}
	c = newClient(t, scepclient.Config{URL: st.URL, Transport: rec})
	if info, err = c.Discover(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "cacert-stepca.der"), rec.last)
	if _, _, _, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("seed"), ChallengePassword: "s3cret"}, key: rsaKey(t, 2048, 0)}); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "certrep-success-stepca.der"), rec.last)

	// NDES-like: CA, RA signing and RA encryption certificates; PENDING.
	nd := scepserver.Start(t, scepserver.Behavior{RASplit: true, Pending: 2})
	rec = &captureTransport{}
	c = newClient(t, scepclient.Config{URL: nd.URL, Transport: rec})
	if info, err = c.Discover(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "cacert-ndes-like.der"), rec.last)
	if _, _, _, err := enroll(t, c, info, enrollment{tmpl: scep.CSRTemplate{Subject: name("seed")}, key: rsaKey(t, 2048, 0)}); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "certrep-pending-ndes-like.der"), rec.last)
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(b))
}

// captureTransport keeps the last response body.
type captureTransport struct {
	base http.RoundTripper // nil: http.DefaultTransport
	last []byte
}

func (c *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := c.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	c.last = body
	resp.Body = io.NopCloser(bytesReader(body))
	return resp, nil
}
