package pprofsave

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"path/filepath"
	"testing"
)

func TestHeapAndCPU(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	dir := t.TempDir()

	heap := filepath.Join(dir, "sub", "heap.pb.gz")
	if err := Heap(t.Context(), addr, heap); err != nil {
		t.Fatal(err)
	}
	cpu := filepath.Join(dir, "cpu.pprof")
	if err := CPU(t.Context(), addr, 1, cpu); err != nil {
		t.Fatal(err)
	}
	// A profile is a gzipped protocol buffer.
	for _, path := range []string{heap, cpu} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			t.Errorf("%s is not a gzipped profile: % x", path, b[:min(len(b), 8)])
		}
	}
}

func TestSaveLeavesNoFileOnAnError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "x")
	if err := Save(t.Context(), srv.URL, path); err == nil {
		t.Fatal("a 404 was saved")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a file was left: %v", err)
	}
}
