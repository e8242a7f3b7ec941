//go:build soak

package soak

import (
	"context"
	"time"

	"github.com/scep-operator/scep-operator/test/ndes"
)

// approve plays the CA manager behind NDES until ctx ends: it turns the
// template's manual approval on and off every 30-90 s (off: NDES issues at
// once; on: it answers PENDING) and approves each pending request 2-40 s
// after it first saw it, so requests wait through faults, manager kills
// and NDES restarts.
func (h *harness) approve(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	due := map[string]time.Time{}
	manual := true
	toggleAt := time.Now().Add(h.between(30*time.Second, 90*time.Second))
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		if now.After(toggleAt) {
			manual = !manual
			h.ndes.Set(func(o *ndes.Options) { o.ManualApproval = manual })
			h.logf("ndes: manual approval %s", map[bool]string{true: "on", false: "off"}[manual])
			toggleAt = now.Add(h.between(30*time.Second, 90*time.Second))
		}
		pending := map[string]bool{}
		for _, tx := range h.ndes.PendingTransactions() {
			pending[tx] = true
			if _, ok := due[tx]; !ok {
				due[tx] = now.Add(h.between(2*time.Second, 40*time.Second))
			}
			if now.After(due[tx]) {
				if err := h.ndes.Approve(tx); err != nil {
					h.logf("ndes: approving %s…: %v", tx[:12], err)
				}
			}
		}
		for tx := range due {
			if !pending[tx] {
				delete(due, tx)
			}
		}
	}
}
