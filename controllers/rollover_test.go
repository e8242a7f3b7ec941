package controllers_test

import (
	"crypto"
	"crypto/x509/pkix"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestCARollover: a profile pinned to the current CA sees the next CA that
// the server announces through GetNextCACert (status, Event, metric),
// trusts it because the pinned CA signed the announcement, and keeps
// issuing when the server switches to it, with no admin edit: a request
// sent after the switch is issued by the new CA. Editing the pins forgets
// what the old pins vouched for.
func TestCARollover(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := scepserver.Start(t, scepserver.Behavior{})
	startManager(t)
	c := apiServer(t).Client
	oldCA := srv.CA

	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rolling"},
		Spec: scepv1alpha1.SCEPProfileSpec{
			AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL,
			CAFingerprint: "sha256:" + scep.FingerprintOf(oldCA, crypto.SHA256).Hex(),
			RetryInterval: duration(time.Second),
		},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	key := profiles.KeyOf(p).String()
	published := testutil.ToFloat64(metrics.CARollover.WithLabelValues(key, metrics.RolloverNextCAPublished))

	nextCA, err := srv.AnnounceNextCA()
	if err != nil {
		t.Fatal(err)
	}
	nextFP := scep.FingerprintOf(nextCA, crypto.SHA256).Hex()
	recheck(t, p)
	st := p.Status
	if len(st.NextCACertificates) != 1 || st.NextCACertificates[0].SHA256Fingerprint != nextFP || st.NextCACertificates[0].NotBefore == nil || st.NextCACertificates[0].Subject == "" {
		t.Fatalf("status.nextCACertificates = %+v, want the announced CA with subject, notBefore and SHA-256", st.NextCACertificates)
	}
	if st.CARollover == nil || !slices.Contains(st.CARollover.Fingerprints, nextFP) {
		t.Fatalf("status.caRollover = %+v, want the announced CA", st.CARollover)
	}
	if got := testutil.ToFloat64(metrics.CARollover.WithLabelValues(key, metrics.RolloverNextCAPublished)); got != published+1 {
		t.Errorf("%s{event=next_ca_published} = %v, want %v", "scep_ca_rollover_events_total", got, published+1)
	}
	waitProfileEvent(t, p, controllers.EventNextCAPublished)

	before := waitRequest(t, approvedRequest(t, p, "before", 0), 30*time.Second)
	issued(t, before, oldCA)

	// The CA rolls over: GetCACert serves the announced CA alone, and the
	// old key no longer decrypts. A request whose profile still caches the
	// old CA is answered with a reply it cannot verify, asks again, and is
	// issued by the new CA after one retry; the profile switches.
	if _, err := srv.RolloverCA(); err != nil {
		t.Fatal(err)
	}
	after := waitRequest(t, approvedRequest(t, p, "after", 1), 60*time.Second)
	issued(t, after, nextCA)
	waitProfileEvent(t, p, controllers.EventCASwitched)
	recheck(t, p)
	if cond := waitProfile(t, p, metav1.ConditionTrue, 30*time.Second); cond.Reason != controllers.ReasonChecked {
		t.Fatalf("after the switch Ready = %s: %s", cond.Reason, cond.Message)
	}
	if len(p.Status.CACertificates) != 1 || p.Status.CACertificates[0].SHA256Fingerprint != nextFP {
		t.Fatalf("status.caCertificates = %+v, want the new CA", p.Status.CACertificates)
	}
	if got := testutil.ToFloat64(metrics.CARollover.WithLabelValues(key, metrics.RolloverSwitched)); got < 1 {
		t.Errorf("scep_ca_rollover_events_total{event=switched} = %v, want at least 1", got)
	}

	// A new pin set (here: one more, unrelated pin) forgets the trust the
	// old pins derived: the profile now needs the new CA pinned.
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.CAFingerprints = []string{wrongFingerprint}
	if err := c.Patch(t.Context(), p, patch); err != nil {
		t.Fatal(err)
	}
	if cond := waitProfile(t, p, metav1.ConditionFalse, 30*time.Second); cond.Reason != controllers.ReasonFingerprintMismatch {
		t.Fatalf("after editing the pins Ready = %s: %s, want FingerprintMismatch", cond.Reason, cond.Message)
	}
	patch = client.MergeFrom(p.DeepCopy())
	p.Spec.CAFingerprints = []string{nextFP}
	if err := c.Patch(t.Context(), p, patch); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
}

// approvedRequest creates and approves a request of p for the i-th test key.
func approvedRequest(t *testing.T, p scepv1alpha1.Profile, name string, i int) *cmapi.CertificateRequest {
	t.Helper()
	cr := request(t, p.GetNamespace(), name, refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: name}}, rsaKey(2048, i)), nil)
	setApproval(t, cr, true)
	return cr
}

// waitProfileEvent waits for an Event of reason on p.
func waitProfileEvent(t *testing.T, p scepv1alpha1.Profile, reason string) {
	t.Helper()
	eventually(t, 30*time.Second, "a "+reason+" Event on "+p.GetName(), func() (bool, string) {
		evs, err := profileEvents(t, p.GetNamespace(), p.GetName())
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs {
			if e.Reason == reason {
				return true, ""
			}
			seen = append(seen, e.Reason)
		}
		return false, "seen: " + strings.Join(seen, ", ")
	})
}
