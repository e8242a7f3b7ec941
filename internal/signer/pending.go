package signer

import (
	"errors"

	"github.com/cert-manager/issuer-lib/controllers/signer"

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

// stillPending says whether a call left its request PENDING at the server,
// to be polled: the server answered PENDING (now or before), and the call
// neither finished the request nor failed it for good. An error that is
// neither (recording the state conflicted with another write, a CertPoll
// got no answer) leaves it pending: the next call polls it.
func stillPending(st State, err error) bool {
	var permanent signer.PermanentError
	return st.Pending && err != nil && !errors.As(err, &permanent)
}
