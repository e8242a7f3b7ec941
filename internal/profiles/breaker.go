package profiles

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// One profile's server that does not answer must not hold the workers that
// all profiles share (issuer-lib's CertificateRequest workers): each of its
// requests would wait in a worker for the whole request timeout, and the
// ones waiting for the profile's maxConcurrentRequests slots would cycle
// through the workers meanwhile. The Registry keeps a circuit breaker per
// profile, fed by every HTTP round trip to the profile's servers
// (enrollments, checks, NDES passwords):
//
//   - closed: requests go ahead (maxConcurrentRequests still bounds them);
//   - open, after a round trip that got no answer (timeout, connection
//     refused or lost), or when requests Admit let through have waited
//     MaxSilence without the server answering anything: requests are held
//     back (back to the queue, no attempt spent, no worker held), but for
//     one probe at a time, once the requests in flight are done and the
//     probe interval has passed (ProbeInterval, doubled by each failed
//     probe up to MaxProbeInterval);
//   - closed again at the first answer, to a probe or to a profile check.
//
// So a server that hangs holds at most its profile's maxConcurrentRequests
// workers until its breaker opens, and then at most one. A slow answer is
// an answer: a server that works slowly keeps its concurrency.
const (
	// ProbeInterval is the first wait between probes of an open breaker.
	ProbeInterval = 5 * time.Second
	// MaxProbeInterval caps the wait between probes.
	MaxProbeInterval = time.Minute
	// DefaultMaxSilence applies when the Registry's MaxSilence is zero
	// (but never more than half the round-trip timeout).
	DefaultMaxSilence = 10 * time.Second
)

// UnresponsiveError says that a profile's server has not answered lately,
// so a request is held back: ask again after RetryAfter.
type UnresponsiveError struct {
	// Key is the profile.
	Key Key
	// Reason says what was seen, e.g. "no answer for 12s to 4 request(s)".
	Reason string
	// Since is when the breaker opened.
	Since time.Time
	// RetryAfter is when to ask again.
	RetryAfter time.Duration
}

func (e *UnresponsiveError) Error() string {
	return fmt.Sprintf("the SCEP server of %s has not answered since %s (%s): its requests wait and one at a time probes it, spending no attempt; next look in %s",
		e.Key, e.Since.UTC().Format(time.RFC3339), e.Reason, e.RetryAfter.Round(time.Second))
}

// breaker is one profile's circuit breaker.
type breaker struct {
	open     bool
	openedAt time.Time
	reason   string
	// interval is the current wait between probes; nextProbe is the
	// earliest time of the next.
	interval  time.Duration
	nextProbe time.Time
	// probe is the admission of the probe in flight (0: none); probeFailed
	// says its failure has already lengthened the interval (a probe may
	// make several round trips).
	probe       uint64
	probeFailed bool
	// lastAnswer is when a round trip last got an answer.
	lastAnswer time.Time
	// admitted are the requests Admit let through that are not released
	// yet, with when they were admitted.
	admitted map[uint64]time.Time
}

type breakers struct {
	mu     sync.Mutex
	byKey  map[Key]*breaker
	nextID uint64
}

func (r *Registry) maxSilence() time.Duration {
	if r.MaxSilence > 0 {
		return r.MaxSilence
	}
	if r.Timeout > 0 && r.Timeout/2 < DefaultMaxSilence {
		return r.Timeout / 2
	}
	return DefaultMaxSilence
}

func (r *Registry) now() time.Time {
	if r.Clock != nil {
		return r.Clock.Now()
	}
	return time.Now()
}

// breakerLocked returns key's breaker; r.brk.mu is held.
func (r *Registry) breakerLocked(key Key) *breaker {
	if r.brk.byKey == nil {
		r.brk.byKey = map[Key]*breaker{}
	}
	b := r.brk.byKey[key]
	if b == nil {
		b = &breaker{admitted: map[uint64]time.Time{}}
		r.brk.byKey[key] = b
	}
	return b
}

// Admit asks whether a request of profile key may talk to the profile's
// server now. When it may, release is not nil: call it once the request is
// done with the server, whatever the outcome (the outcome itself is learned
// from the round trips). When it may not, err is an *UnresponsiveError and
// retryAfter says when to ask again: hand the request back to the queue for
// that long without spending an attempt, so that it holds no worker.
//
// Call it once per request and attempt, before anything that may wait on
// the server (including waiting for one of the profile's
// maxConcurrentRequests slots); a nested Admit for the same request would
// refuse every probe.
func (r *Registry) Admit(key Key) (release func(), retryAfter time.Duration, err error) {
	now := r.now()
	r.brk.mu.Lock()
	defer r.brk.mu.Unlock()
	b := r.breakerLocked(key)
	if oldest, ok := b.oldestAdmitted(); ok && !b.open {
		since := oldest
		if b.lastAnswer.After(since) {
			since = b.lastAnswer
		}
		if silent := now.Sub(since); silent > r.maxSilence() {
			r.openLocked(key, b, now, fmt.Sprintf("no answer for %s to %d request(s) in flight", silent.Round(time.Second), len(b.admitted)))
		}
	}
	probe := false
	if b.open {
		wait := b.nextProbe.Sub(now)
		if len(b.admitted) > 0 {
			// The requests in flight are the probes: wait for their end.
			wait = max(wait, b.interval)
		}
		if wait > 0 {
			wait = jitter(wait)
			return nil, wait, &UnresponsiveError{Key: key, Reason: b.reason, Since: b.openedAt, RetryAfter: wait}
		}
		probe = true
		b.nextProbe = now.Add(b.interval)
	}
	r.brk.nextID++
	id := r.brk.nextID
	b.admitted[id] = now
	if probe {
		b.probe, b.probeFailed = id, false
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			r.brk.mu.Lock()
			delete(b.admitted, id)
			if b.probe == id {
				b.probe = 0
			}
			r.brk.mu.Unlock()
		})
	}, 0, nil
}

func (b *breaker) oldestAdmitted() (time.Time, bool) {
	var oldest time.Time
	for _, t := range b.admitted {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return oldest, !oldest.IsZero()
}

// observeRoundTrip feeds key's breaker with one round trip to its server;
// answered is false when no HTTP answer came (timeout, connection refused
// or lost).
func (r *Registry) observeRoundTrip(key Key, answered bool) {
	now := r.now()
	r.brk.mu.Lock()
	defer r.brk.mu.Unlock()
	b := r.breakerLocked(key)
	switch {
	case answered:
		b.lastAnswer = now
		if b.open {
			b.open = false
			r.Logger.Info("the profile's SCEP server answers again; its requests go ahead", "profile", key.String(), "heldBackFor", now.Sub(b.openedAt).Round(time.Second))
		}
	case !b.open:
		r.openLocked(key, b, now, "a request got no answer: timeout or connection failure")
	case b.probe != 0 && !b.probeFailed:
		b.probeFailed = true
		b.interval = min(2*b.interval, MaxProbeInterval)
		b.nextProbe = now.Add(b.interval)
	}
}

// openLocked opens b; r.brk.mu is held.
func (r *Registry) openLocked(key Key, b *breaker, now time.Time, reason string) {
	b.open, b.openedAt, b.reason = true, now, reason
	b.interval = ProbeInterval
	b.nextProbe = now.Add(b.interval)
	b.probe = 0
	r.Logger.Info("the profile's SCEP server does not answer; holding its requests back and probing one at a time", "profile", key.String(), "reason", reason)
}

// answeredErr says whether err, from a round trip other than through a
// scepclient (NDES's admin page), came with an answer from the server.
func answeredErr(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	return err == nil || (!errors.As(err, &netErr) && !errors.As(err, &opErr) &&
		!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF))
}

func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d)/5+1))
}
