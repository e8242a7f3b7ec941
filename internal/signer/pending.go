package signer

import (
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/profiles"
)

// trackPending keeps the scep_pending_requests gauge: requests answered
// PENDING and still being polled.
func (s *Signer) trackPending(req request, key profiles.Key, pending bool) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if s.pending == nil {
		s.pending = map[string]string{}
	}
	id := req.id()
	_, was := s.pending[id]
	if pending == was {
		return
	}
	if pending {
		s.pending[id] = key.String()
		metrics.Pending.WithLabelValues(key.String()).Inc()
	} else {
		delete(s.pending, id)
		metrics.Pending.WithLabelValues(key.String()).Dec()
	}
}
