//go:build soak

package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/scep-operator/scep-operator/test/pprofsave"
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
	if err := pprofsave.Heap(ctx, fmt.Sprintf("127.0.0.1:%d", slot.pprofPort), path); err != nil {
		h.logf("heap profile of %s#%d: %v", name, slot.starts, err)
		return
	}
	h.logf("heap profile of %s#%d: %s", name, slot.starts, path)
}
