package metricsauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// reviews answers TokenReviews and SubjectAccessReviews from maps, counting
// the calls (cmd/manager's TestMetricsAuthentication runs the same gate
// against a real API server and RBAC).
type reviews struct {
	users   map[string]string // token -> user
	allowed map[string]bool   // user -> may get /metrics
	fail    bool
	calls   int
}

func (r *reviews) Create(_ context.Context, tr *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	r.calls++
	if r.fail {
		return nil, errors.New("the API server is away")
	}
	u, ok := r.users[tr.Spec.Token]
	out := tr.DeepCopy()
	out.Status = authnv1.TokenReviewStatus{Authenticated: ok, User: authnv1.UserInfo{Username: u}}
	return out, nil
}

type access struct{ *reviews }

func (a access) Create(_ context.Context, sar *authzv1.SubjectAccessReview, _ metav1.CreateOptions) (*authzv1.SubjectAccessReview, error) {
	a.calls++
	out := sar.DeepCopy()
	out.Status.Allowed = a.allowed[sar.Spec.User] && sar.Spec.NonResourceAttributes.Path == "/metrics" && sar.Spec.NonResourceAttributes.Verb == "get"
	return out, nil
}

func TestGate(t *testing.T) {
	rv := &reviews{users: map[string]string{"reader-token": "prometheus", "other-token": "intruder"}, allowed: map[string]bool{"prometheus": true}}
	now := time.Unix(1_800_000_000, 0)
	g := &gate{tokens: rv, access: access{rv}, now: func() time.Time { return now }, cache: map[[sha256.Size]byte]decision{}}
	ask := func(header string) int {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		return g.decide(r, logr.Discard())
	}
	for _, c := range []struct {
		header string
		want   int
		calls  int // API calls this one makes
	}{
		{"", http.StatusUnauthorized, 0},
		{"Basic cmVhZGVyOnB3", http.StatusUnauthorized, 0},
		{"Bearer ", http.StatusUnauthorized, 0},
		{"Bearer not-a-token", http.StatusUnauthorized, 1},
		{"Bearer other-token", http.StatusForbidden, 2},
		{"Bearer reader-token", http.StatusOK, 2},
		{"bearer reader-token", http.StatusOK, 0}, // cached
		{"Bearer other-token", http.StatusForbidden, 0},
	} {
		before := rv.calls
		if got := ask(c.header); got != c.want || rv.calls-before != c.calls {
			t.Errorf("%q: %d with %d API calls, want %d with %d", c.header, got, rv.calls-before, c.want, c.calls)
		}
	}

	// A refusal is asked again after ten seconds, an allowed scrape after a
	// minute.
	rv.allowed["intruder"] = true
	now = now.Add(refusedFor + time.Second)
	if got := ask("Bearer other-token"); got != http.StatusOK {
		t.Errorf("a role bound since: %d, want 200", got)
	}
	delete(rv.allowed, "prometheus")
	if got := ask("Bearer reader-token"); got != http.StatusOK {
		t.Errorf("within the minute: %d, want the cached 200", got)
	}
	now = now.Add(allowedFor)
	if got := ask("Bearer reader-token"); got != http.StatusForbidden {
		t.Errorf("a role unbound a minute ago: %d, want 403", got)
	}

	// The API server away: 500, and nothing cached.
	rv.fail = true
	before := rv.calls
	for range 2 {
		if got := ask("Bearer new-token"); got != http.StatusInternalServerError {
			t.Errorf("the API server away: %d, want 500", got)
		}
	}
	if rv.calls-before != 2 {
		t.Errorf("%d TokenReviews for two scrapes with the API server away, want 2 (an error is not cached)", rv.calls-before)
	}

	// Invented tokens do not grow the cache without bound.
	rv.fail = false
	for i := range maxCached + 10 {
		ask("Bearer invented-" + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if len(g.cache) > maxCached {
		t.Errorf("%d cached answers, want at most %d", len(g.cache), maxCached)
	}
}
