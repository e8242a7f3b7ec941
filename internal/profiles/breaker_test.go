package profiles

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

var (
	hanging = Key{Kind: "SCEPProfile", Namespace: "shop", Name: "hanging"}
	healthy = Key{Kind: "SCEPProfile", Namespace: "shop", Name: "healthy"}
)

func breakerRegistry(t *testing.T) (*Registry, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return &Registry{Clock: clk, Timeout: 30 * time.Second, Logger: logr.Discard()}, clk
}

// admit wants key admitted and returns its release.
func admit(t *testing.T, r *Registry, key Key) func() {
	t.Helper()
	release, wait, err := r.Admit(key)
	if err != nil || release == nil {
		t.Fatalf("Admit(%s) refused (wait %s): %v", key, wait, err)
	}
	return release
}

// refused wants key held back and returns how long to wait.
func refused(t *testing.T, r *Registry, key Key) time.Duration {
	t.Helper()
	release, wait, err := r.Admit(key)
	var ue *UnresponsiveError
	if release != nil || !errors.As(err, &ue) || wait <= 0 || ue.RetryAfter != wait {
		t.Fatalf("Admit(%s) = release %v, wait %s, %v; want it held back", key, release != nil, wait, err)
	}
	return wait
}

func within(d, want time.Duration) bool { return d >= want-want/10 && d <= want+want/10 }

// TestBreakerOpensOnNoAnswer: a round trip without an answer holds the
// profile's requests back, but one probe per interval once the requests in
// flight are done; a failed probe doubles the interval, up to a cap; an
// answer lets everything through again. Another profile is never affected.
func TestBreakerOpensOnNoAnswer(t *testing.T) {
	r, clk := breakerRegistry(t)
	var inFlight []func()
	for range 8 {
		inFlight = append(inFlight, admit(t, r, hanging))
	}

	r.observeRoundTrip(hanging, false)
	release, _, err := r.Admit(hanging)
	if release != nil || !strings.Contains(err.Error(), "shop/hanging") || !strings.Contains(err.Error(), "spending no attempt") {
		t.Fatalf("held-back request: %v", err)
	}
	admit(t, r, healthy)()

	// In-flight requests (the 8 admitted above) are the probes; once done,
	// one probe goes at a time after the interval.
	clk.Step(ProbeInterval)
	refused(t, r, hanging)
	for _, release := range inFlight {
		release()
	}
	probe := admit(t, r, hanging)
	refused(t, r, hanging)
	clk.Step(time.Second)
	r.observeRoundTrip(hanging, false)
	probe()
	if w := refused(t, r, hanging); !within(w, 2*ProbeInterval) {
		t.Errorf("after a failed probe, wait %s, want about %s", w, 2*ProbeInterval)
	}
	for range 10 {
		clk.Step(MaxProbeInterval)
		probe = admit(t, r, hanging)
		clk.Step(time.Second)
		r.observeRoundTrip(hanging, false)
		probe()
	}
	if w := refused(t, r, hanging); !within(w, MaxProbeInterval) {
		t.Errorf("probe interval grew to %s, want it capped at %s", w, MaxProbeInterval)
	}

	// An answer (to a probe or a check) closes it, however slow.
	r.observeRoundTrip(hanging, true)
	admit(t, r, hanging)()

	// Opened again, from the first interval: a probe that makes several
	// round trips (a CertPoll, then the PKCSReq) lengthens it once.
	r.observeRoundTrip(hanging, false)
	clk.Step(ProbeInterval)
	probe = admit(t, r, hanging)
	r.observeRoundTrip(hanging, false)
	r.observeRoundTrip(hanging, false)
	probe()
	if w := refused(t, r, hanging); !within(w, 2*ProbeInterval) {
		t.Errorf("after a probe with two failed round trips, wait %s, want about %s", w, 2*ProbeInterval)
	}
	r.observeRoundTrip(hanging, true)
	for range 4 {
		defer admit(t, r, hanging)()
	}
}

// TestBreakerOpensOnSilence: requests waiting on a server that has not
// answered anything for MaxSilence hold the others back, before any
// timeout; answers coming in keep it closed however long a request takes.
func TestBreakerOpensOnSilence(t *testing.T) {
	r, clk := breakerRegistry(t)
	if got := r.maxSilence(); got != DefaultMaxSilence {
		t.Fatalf("maxSilence = %s with a 30s timeout, want %s", got, DefaultMaxSilence)
	}
	if got := (&Registry{Timeout: 4 * time.Second}).maxSilence(); got != 2*time.Second {
		t.Errorf("maxSilence = %s with a 4s timeout, want 2s", got)
	}
	a, b := admit(t, r, hanging), admit(t, r, hanging)
	clk.Step(DefaultMaxSilence - time.Second)
	r.observeRoundTrip(hanging, true) // a slow answer to one of them
	clk.Step(5 * time.Second)
	c := admit(t, r, hanging) // answered lately
	clk.Step(DefaultMaxSilence + time.Second)
	if w := refused(t, r, hanging); !within(w, ProbeInterval) {
		t.Errorf("wait %s, want about %s", w, ProbeInterval)
	}
	// While the silent requests are in flight, no probe is added.
	clk.Step(time.Minute)
	refused(t, r, hanging)
	a()
	b()
	c()
	c() // release is idempotent
	admit(t, r, hanging)()
}

// TestBreakerFedByClient: the Registry's SCEP clients feed the breaker;
// a server that refuses connections holds the profile's requests back.
func TestBreakerFedByClient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "gone"}, Spec: scepv1alpha1.SCEPProfileSpec{URL: "http://" + addr + "/scep"}}
	r := &Registry{Logger: logr.Discard()}
	admit(t, r, KeyOf(p))()
	if _, err := r.Discover(context.Background(), p); err == nil {
		t.Fatal("Discover of a closed port succeeded")
	}
	refused(t, r, KeyOf(p))
}

// TestForgetProfileDropsItsBreaker: a deleted profile leaves no breaker
// behind (one per profile ever deleted would pile up), a request still in
// flight releases safely, and the name starts again with a closed breaker.
func TestForgetProfileDropsItsBreaker(t *testing.T) {
	r, _ := breakerRegistry(t)
	release := admit(t, r, hanging)
	r.observeRoundTrip(hanging, false)
	refused(t, r, hanging)
	admit(t, r, healthy)()

	r.ForgetProfile(hanging)
	r.brk.mu.Lock()
	_, kept := r.brk.byKey[hanging]
	breakers := len(r.brk.byKey)
	r.brk.mu.Unlock()
	if kept || breakers != 1 {
		t.Errorf("after ForgetProfile: hanging's breaker kept %v, %d breakers; want only healthy's", kept, breakers)
	}
	release()
	admit(t, r, hanging)()

	// Forget alone (a server's certificates changed) keeps the breaker.
	r.observeRoundTrip(healthy, false)
	r.Forget(healthy)
	refused(t, r, healthy)
}
