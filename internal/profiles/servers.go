package profiles

import (
	"slices"
	"time"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/metrics"
)

// Servers returns the profile's SCEP servers in the order they are tried:
// url, then failoverURLs (empty entries and repeats left out).
func Servers(spec *scepv1alpha1.SCEPProfileSpec) []string {
	out := []string{spec.URL}
	for _, u := range spec.FailoverURLs {
		if u != "" && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// serverKey identifies one server of one profile.
type serverKey struct {
	Key
	URL string
}

// serverHealth is what the last round trip to a server said.
type serverHealth struct {
	down  bool
	since time.Time
}

// observeServer records a round trip's HTTP status (0: no answer): an
// answer other than 5xx means the server is up.
func (r *Registry) observeServer(sk serverKey, status int) {
	down := status == 0 || status >= 500
	r.mu.Lock()
	if r.health == nil {
		r.health = map[serverKey]*serverHealth{}
	}
	h := r.health[sk]
	if h == nil || h.down != down {
		h = &serverHealth{down: down, since: r.now()}
		r.health[sk] = h
	}
	r.mu.Unlock()
	up := 1.0
	if down {
		up = 0
	}
	metrics.ServerUp.WithLabelValues(sk.Key.String(), sk.URL).Set(up)
}

// ServerOrder returns p's servers in the order a new transaction tries
// them: those whose last round trip got an answer (or that were not asked
// yet) first, then those that were down, each group in the spec's order.
// A server found down is still tried, last: it may be back, and the
// profile's checks ask every server.
func (r *Registry) ServerOrder(p scepv1alpha1.Profile) []string {
	servers := Servers(p.GetSpec())
	key := KeyOf(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	var up, down []string
	for _, s := range servers {
		if h := r.health[serverKey{Key: key, URL: s}]; h != nil && h.down {
			down = append(down, s)
		} else {
			up = append(up, s)
		}
	}
	return append(up, down...)
}

// anotherServerUp says whether a server of sk's profile other than sk
// answered its last round trip (or was not asked yet).
func (r *Registry) anotherServerUp(sk serverKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.servers[sk.Key]
	if !ok {
		return false
	}
	for _, u := range e {
		if u == sk.URL {
			continue
		}
		if h := r.health[serverKey{Key: sk.Key, URL: u}]; h == nil || !h.down {
			return true
		}
	}
	return false
}
