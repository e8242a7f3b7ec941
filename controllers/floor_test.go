package controllers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/test/ndes"
)

// TestCryptoFloor: the profile's status shows the algorithms in use and a
// metric counts issued enrollments by them; a server below the floor (one
// that does not answer GetCACaps, one that announces no cipher and so gets
// single DES) leaves the profile not Ready, saying what it lacks and which
// field would allow it, until the floor is lowered.
func TestCryptoFloor(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	startManager(t)
	c := apiServer(t).Client
	ndesCredentials(t, ns, "floor-agent", ndesUser, ndes.DefaultPassword)
	profile := func(t *testing.T, name string, srv *ndes.Server, floor *scepv1alpha1.CryptoFloor) *scepv1alpha1.SCEPProfile {
		spec := ndesDynamicSpec(srv, "NTLM", "floor-agent")
		spec.CryptoFloor = floor
		return ndesProfile(t, ns, name, spec, nil)
	}
	status := func(t *testing.T, p *scepv1alpha1.SCEPProfile) scepv1alpha1.SCEPProfileStatus {
		t.Helper()
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
			t.Fatal(err)
		}
		return p.Status
	}

	t.Run("NDES 2016+: 3DES and SHA-512 in status and metric", func(t *testing.T) {
		// NDES announces DES3 and SHA-512, no AES: a SHA-256 floor allows it.
		srv := startNDES(t, ndes.Options{})
		p := profile(t, "floor-ndes", srv, &scepv1alpha1.CryptoFloor{ContentEncryption: "DES3", Digest: "SHA256"})
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
		if got := status(t, p).Algorithms; got != "DES-EDE3-CBC/SHA-512" {
			t.Errorf("status.algorithms = %q", got)
		}
		issued(t, waitRequest(t, ndesRequest(t, ns, p, "floor-app", 20, "floor-app"), 30*time.Second), srv.CA)
		key := "SCEPProfile " + ns + "/floor-ndes"
		if v := testutil.ToFloat64(metrics.EnrollmentsByAlgorithm.WithLabelValues(key, "DES-EDE3-CBC", "SHA-512")); v != 1 {
			t.Errorf("scep_enrollments_by_algorithm_total{cipher=DES-EDE3-CBC,digest=SHA-512} = %v", v)
		}
	})

	t.Run("AES announced: an AES floor is met", func(t *testing.T) {
		srv := startNDES(t, ndes.Options{Caps: []string{"POSTPKIOperation", "SHA-512", "SHA-256", "DES3", "AES"}})
		p := profile(t, "floor-aes", srv, &scepv1alpha1.CryptoFloor{ContentEncryption: "AES", Digest: "SHA256"})
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
		if got := status(t, p).Algorithms; got != "AES-256-CBC/SHA-512" {
			t.Errorf("status.algorithms = %q", got)
		}
	})

	t.Run("no GetCACaps: the default floor allows its fallback", func(t *testing.T) {
		srv := startNDES(t, ndes.Options{NoCaps: true, GetOnly: true})
		p := profile(t, "floor-old-default", srv, nil)
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
		if got := status(t, p).Algorithms; got != "DES-EDE3-CBC/SHA-1" {
			t.Errorf("status.algorithms = %q", got)
		}
	})

	t.Run("no GetCACaps: an AES floor refuses, then allows when lowered", func(t *testing.T) {
		srv := startNDES(t, ndes.Options{NoCaps: true, GetOnly: true})
		p := profile(t, "floor-old-aes", srv, &scepv1alpha1.CryptoFloor{ContentEncryption: "AES", Digest: "SHA256"})
		cond := waitProfile(t, p, metav1.ConditionFalse, 30*time.Second)
		if cond.Reason != controllers.ReasonBelowCryptoFloor ||
			!strings.Contains(cond.Message, "GetCACaps") ||
			!strings.Contains(cond.Message, "spec.cryptoFloor.contentEncryption: DES3") ||
			!strings.Contains(cond.Message, "spec.cryptoFloor.digest: SHA1") {
			t.Errorf("Ready = %s: %s; want BelowCryptoFloor naming the fields", cond.Reason, cond.Message)
		}
		eventuallyNoConflict(t, func() error {
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
				return err
			}
			p.Spec.CryptoFloor = &scepv1alpha1.CryptoFloor{ContentEncryption: "DES3", Digest: "SHA1"}
			return c.Update(t.Context(), p)
		})
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	})

	t.Run("no cipher announced: single DES refused by default", func(t *testing.T) {
		srv := startNDES(t, ndes.Options{Caps: []string{"POSTPKIOperation", "SHA-256"}})
		p := profile(t, "floor-des", srv, nil)
		cond := waitProfile(t, p, metav1.ConditionFalse, 30*time.Second)
		if cond.Reason != controllers.ReasonBelowCryptoFloor || !strings.Contains(cond.Message, "spec.cryptoFloor.contentEncryption: DES allows it") {
			t.Errorf("Ready = %s: %s; want BelowCryptoFloor naming contentEncryption: DES", cond.Reason, cond.Message)
		}
	})
}
