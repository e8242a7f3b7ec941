package signer

import (
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/profiles"
)

// trackPending keeps the scep_pending_requests gauge: requests answered
// PENDING and still being polled.
func (s *Signer) trackPending(cr *cmapi.CertificateRequest, key profiles.Key, pending bool) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if s.pending == nil {
		s.pending = map[string]string{}
	}
	id := cr.Namespace + "/" + cr.Name
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
