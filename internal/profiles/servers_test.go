package profiles

import (
	"testing"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestServerOrderAndBreaker: a server found down is tried last, and its
// silence holds the profile's requests back only while no other server of
// the profile answers.
func TestServerOrderAndBreaker(t *testing.T) {
	live := scepserver.Start(t, scepserver.Behavior{})
	dead, deader := scepserver.DeadURL(t), scepserver.DeadURL(t)
	for _, tc := range []struct {
		name     string
		failover []string
		wantHeld bool
	}{
		{name: "one server answers", failover: []string{live.URL}},
		{name: "none answers", failover: []string{deader}, wantHeld: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Registry{Logger: logr.Discard()}
			p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: tc.name}, Spec: scepv1alpha1.SCEPProfileSpec{URL: dead, FailoverURLs: tc.failover}}
			if _, err := r.DiscoverServer(t.Context(), p, dead); err == nil {
				t.Fatal("a server nothing listens on answered")
			}
			_, _ = r.DiscoverServer(t.Context(), p, tc.failover[0])
			if got := r.ServerOrder(p); !tc.wantHeld && (got[0] == dead || got[len(got)-1] != dead) {
				t.Errorf("order %v; want the server found down last", got)
			}
			release, _, err := r.Admit(KeyOf(p))
			if held := err != nil; held != tc.wantHeld {
				t.Fatalf("held back = %v (%v), want %v", held, err, tc.wantHeld)
			}
			if release != nil {
				release()
			}
		})
	}
}
