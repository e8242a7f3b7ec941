//go:build soak

package soak

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// profileHeap saves the leading manager's heap profile every soak.heap-every
// and once when the load stops, into soak.heap-dir. RSS alone cannot tell a
// leak from a heap settling or from records kept for a set time; two
// profiles of one process compared (go tool pprof -base) name what grew.
func (h *harness) profileHeap(ctx context.Context) {
	if *heapDir == "" {
		return
	}
	if err := os.MkdirAll(*heapDir, 0o755); err != nil {
		h.t.Errorf("soak.heap-dir: %v", err)
		return
	}
	tick := time.NewTicker(*heapEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// The last one, with a context of its own: ctx is over.
			last, cancel := context.WithTimeout(h.procCtx, 30*time.Second)
			h.saveLeaderHeap(last)
			cancel()
			return
		case <-tick.C:
			h.saveLeaderHeap(ctx)
		}
	}
}

// saveLeaderHeap writes heap-<process>-<minutes into the run>m.pb.gz.
func (h *harness) saveLeaderHeap(ctx context.Context) {
	name := h.leader()
	if name == "" {
		h.logf("heap profile: no leader now; skipped")
		return
	}
	slot := h.snapshotManagers()[name]
	path := filepath.Join(*heapDir, fmt.Sprintf("heap-%s#%d-%03.0fm.pb.gz", name, slot.starts, time.Since(h.start).Minutes()))
	if err := saveURL(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1", slot.pprofPort), path); err != nil {
		h.logf("heap profile of %s#%d: %v", name, slot.starts, err)
		return
	}
	h.logf("heap profile of %s#%d: %s", name, slot.starts, path)
}

func saveURL(ctx context.Context, url, path string) error {
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
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
