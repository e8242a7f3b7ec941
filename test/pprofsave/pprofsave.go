// Package pprofsave saves a Go process's profile from its /debug/pprof
// endpoint into a file, for the benches and the soak.
package pprofsave

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
)

// Heap saves the heap profile, taken after a GC, of the process serving
// /debug/pprof at addr (host:port) into path.
func Heap(ctx context.Context, addr, path string) error {
	return Save(ctx, "http://"+addr+"/debug/pprof/heap?gc=1", path)
}

// CPU records the CPU profile of the process at addr for secs seconds into
// path; it returns when the profile is written.
func CPU(ctx context.Context, addr string, secs int, path string) error {
	return Save(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), path)
}

// Save writes what url answers into path, making path's directory; an
// answer other than 200 OK is an error, and leaves no file.
func Save(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	return f.Close()
}
