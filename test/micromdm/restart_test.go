package micromdm_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/scep-operator/scep-operator/test/micromdm"
)

// TestKillRestart: a killed server refuses connections; restarted, it
// serves on the same URL from the same depot (same CA).
func TestKillRestart(t *testing.T) {
	s := micromdm.Start(t, micromdm.Options{})
	caps := func() error {
		resp, err := http.Get(s.URL + "?operation=GetCACaps")
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	}
	if err := caps(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(s.Depot, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if caps() == nil {
		t.Fatal("GetCACaps answered while the server was killed")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := caps(); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
	after, err := os.ReadFile(filepath.Join(s.Depot, "ca.pem"))
	if err != nil || string(after) != string(before) {
		t.Errorf("the depot's CA changed across the restart (%v)", err)
	}
}
