package interop

import (
	"errors"
	"net/http"
	"testing"

	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/stepca"
)

// TestNoGetNextCACert records what MicroMDM and step-ca do about a CA
// rollover (RFC 8894 section 4.7): neither lists GetNextCACert, so the
// client never asks them, and asking anyway gets HTTP 500 (MicroMDM:
// "operation not implemented"; step-ca: "unknown operation"). Their CA changes reach a profile only
// through GetCACert (docs/configuration.md, "CA rollover").
func TestNoGetNextCACert(t *testing.T) {
	mdm := micromdm.Start(t, micromdm.Options{})
	step := stepca.Start(t, stepca.Options{})
	for _, tc := range []struct {
		name string
		cfg  scepclient.Config
		http *http.Client
	}{
		{name: "MicroMDM", cfg: scepclient.Config{URL: mdm.URL}, http: http.DefaultClient},
		{name: "step-ca", cfg: scepclient.Config{URL: step.URL, RootCAs: step.RootPool}, http: step.HTTPClient()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, tc.cfg)
			info, err := c.Discover(ctxT(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.GetNextCACert(ctxT(t), info); !errors.Is(err, scepclient.ErrNoNextCA) {
				t.Fatalf("GetNextCACert = %v, want ErrNoNextCA (caps %v)", err, info.Caps.Strings())
			}
			resp, err := tc.http.Get(tc.cfg.URL + "?operation=GetNextCACert")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Fatalf("GetNextCACert asked anyway: HTTP 200; the server supports it now: update docs/configuration.md")
				}
				t.Logf("GetNextCACert asked anyway: HTTP %d", resp.StatusCode)
			} else {
				t.Logf("GetNextCACert asked anyway: %v", err)
			}
		})
	}
}
