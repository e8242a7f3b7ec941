package imagebuild

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// commitTime stands for a commit's time in the tests.
var commitTime = time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC)

func testOptions(t *testing.T, out string) Options {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		Root:     root,
		Out:      out,
		Version:  "0.1.0-test",
		Revision: "0123456789abcdef0123456789abcdef01234567",
		Created:  commitTime,
		Go:       "go",
	}
}

// fakeCompile stands in for go build in the tests that are about packaging:
// every binary is this test binary, which has build information too.
func fakeCompile(_ context.Context, _ Options, _ v1.Platform, _ string) (map[string][]byte, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		return nil, err
	}
	bins := map[string][]byte{}
	for _, b := range Binaries {
		bins[b] = data
	}
	return bins, nil
}

// builds are the real builds shared by the tests that compile: one build
// of both platforms costs minutes on a cold cache.
var builds struct {
	sync.Mutex
	done map[string]*Result
}

// realBuild builds the image from this repository into a directory named
// by key (one build per key per test run); skipped with -short.
func realBuild(t *testing.T, key string) *Result {
	t.Helper()
	if testing.Short() || os.Getenv("SCEP_IMAGE_TESTS") == "" {
		// About 20 CPU-minutes on a cold cache: kept out of make test's
		// budget; make test-image runs them (and make image builds the same).
		t.Skip("compiles the manager for two platforms (minutes on a cold cache): set SCEP_IMAGE_TESTS=1 (make test-image)")
	}
	builds.Lock()
	defer builds.Unlock()
	if r, ok := builds.done[key]; ok {
		if r == nil {
			t.Fatal("the shared build failed (see the first test that ran it)")
		}
		return r
	}
	if builds.done == nil {
		builds.done = map[string]*Result{}
	}
	builds.done[key] = nil
	dir, err := os.MkdirTemp("", "imagebuild-test-")
	if err != nil {
		t.Fatal(err)
	}
	cleanups = append(cleanups, func() { _ = os.RemoveAll(dir) })
	start := time.Now()
	r, err := Build(context.Background(), testOptions(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s for %d platforms in %s", r.Tag, len(r.Images), time.Since(start).Round(time.Second))
	builds.done[key] = r
	return r
}

// cleanups remove the shared builds' directories after every test.
var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	os.Exit(code)
}

// fileInLayer is a file or directory of a layer: its header and contents.
type fileInLayer struct {
	hdr  *tar.Header
	data []byte
}

// layerFiles reads a layer's files by name (as the tar has them, without
// a leading slash; directories end in /).
func layerFiles(t *testing.T, l v1.Layer) map[string]fileInLayer {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	files := map[string]fileInLayer{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = fileInLayer{hdr: h, data: data}
	}
}

// imageFiles is the union of an image's layers (none of ours overwrites
// another's file).
func imageFiles(t *testing.T, img v1.Image) map[string]fileInLayer {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]fileInLayer{}
	for _, l := range layers {
		for n, f := range layerFiles(t, l) {
			if _, dup := files[n]; dup && !f.hdr.FileInfo().IsDir() {
				t.Errorf("%s is in two layers", n)
			}
			files[n] = f
		}
	}
	return files
}

// hostImage is the result's image for this machine's architecture.
func hostImage(t *testing.T, r *Result) PlatformImage {
	t.Helper()
	for _, pi := range r.Images {
		if pi.Platform.Architecture == runtime.GOARCH {
			return pi
		}
	}
	t.Skipf("no image for %s", runtime.GOARCH)
	return PlatformImage{}
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
