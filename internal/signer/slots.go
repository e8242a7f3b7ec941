package signer

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/scep-operator/scep-operator/internal/profiles"
)

// defaultMaxConcurrentRequests applies when a client left the field out.
const defaultMaxConcurrentRequests = 4

// acquire takes one of the profile's maxConcurrentRequests slots; false
// means all are taken and the caller should come back shortly.
func (s *Signer) acquire(key profiles.Key, limit int32) bool {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	if s.inFlight == nil {
		s.inFlight = map[profiles.Key]int{}
	}
	if s.inFlight[key] >= int(limit) {
		return false
	}
	s.inFlight[key]++
	return true
}

// slotWait is how long Sign waits in its worker for one of the profile's
// request slots before handing the request back to the queue. Handing it
// back at once made every waiting request a reconcile, a status patch and a
// Warning Event (issuer-lib writes both for each PendingError) every few
// hundred milliseconds: in a burst, a storm of API writes that slowed the
// enrollments themselves. Waiting here leaves the rest of a burst queued,
// untouched; other profiles' requests still get a worker within slotWait.
const slotWait = time.Second

// acquireWithin is acquire, retried every few milliseconds for up to wait.
func (s *Signer) acquireWithin(ctx context.Context, key profiles.Key, limit int32, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for !s.acquire(key, limit) {
		if !time.Now().Before(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Duration(5+rand.IntN(10)) * time.Millisecond):
		}
	}
	return true
}

func (s *Signer) release(key profiles.Key) {
	s.flightMu.Lock()
	s.inFlight[key]--
	s.flightMu.Unlock()
}
