package node

import (
	"archive/tar"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/scep-operator/scep-operator/test/envtest"
)

func TestParseReports(t *testing.T) {
	log := "serving TLS on 127.0.0.1:4443\n" +
		"volume: serial=2 dns=a.example,b.example notAfter=2027-01-01T00:00:00Z key=matches chain=verified ca-sha256=ab12\n" +
		"reading /etc/tls: open /etc/tls/tls.crt: no such file or directory\n" +
		`volume: serial=3 dns= notAfter=2027-01-02T00:00:00Z key=mismatch chain=failed ca-sha256=cd34 err="tls.key: private key does not match public key; chain: x509: unknown authority"` + "\n"
	got, err := ParseReports(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d reports, want 2: %+v", len(got), got)
	}
	first, second := got[0], got[1]
	if first.Serial != "2" || len(first.DNSNames) != 2 || first.DNSNames[1] != "b.example" || !first.KeyMatches || !first.ChainVerified || first.CASHA256 != "ab12" || first.Err != "" {
		t.Errorf("first report = %+v", first)
	}
	if second.Serial != "3" || len(second.DNSNames) != 0 || second.KeyMatches || second.ChainVerified || second.CASHA256 != "cd34" {
		t.Errorf("second report = %+v", second)
	}
	if want := "tls.key: private key does not match public key; chain: x509: unknown authority"; second.Err != want {
		t.Errorf("second report's Err = %q, want %q", second.Err, want)
	}
	if _, err := ParseReports("volume: serial=2 garbage"); err == nil {
		t.Error("a field that is not key=value parsed")
	}
}

func TestBuildImage(t *testing.T) {
	root := envtest.RepoRoot(t)
	out := filepath.Join(t.TempDir(), "pause.tar")
	if err := BuildImage(t.Context(), root, PauseImage, out); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(PauseImage.Ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("the tarball does not hold %s: %v", PauseImage.Ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/pause" {
		t.Errorf("config: os %q, entrypoint %v; want linux, [/pause]", cfg.OS, cfg.Config.Entrypoint)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	var files []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, h.Name)
		if h.Name == "pause" && (h.Mode&0o111 == 0 || h.Size == 0) {
			t.Errorf("pause: mode %o, %d bytes; want an executable", h.Mode, h.Size)
		}
	}
	if len(files) != 1 || files[0] != "pause" {
		t.Errorf("layer files %v, want [pause]", files)
	}
}
