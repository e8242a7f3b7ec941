package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestProfileReady checks that a profile has one readiness series, its
// latest reason's, and that ForgetProfile drops it and the profile's CA
// expiry series while another profile's stay.
func TestProfileReady(t *testing.T) {
	const p, other = "SCEPProfile team-a/metrics-test", "ClusterSCEPProfile metrics-test"
	SetProfileReady(p, false, "Unreachable")
	SetProfileReady(p, true, "Checked")
	SetProfileReady(other, false, "SecretNotFound")
	CAExpiry.WithLabelValues(p, "CA", "aa").Set(1)
	CAExpiry.WithLabelValues(other, "CA", "bb").Set(1)

	if n := testutil.CollectAndCount(ProfileReady); n != 2 {
		t.Errorf("%d readiness series; want one per profile", n)
	}
	if v := testutil.ToFloat64(ProfileReady.WithLabelValues(p, "Checked")); v != 1 {
		t.Errorf("%s Checked = %v; want 1", p, v)
	}
	if v := testutil.ToFloat64(ProfileReady.WithLabelValues(other, "SecretNotFound")); v != 0 {
		t.Errorf("%s SecretNotFound = %v; want 0", other, v)
	}

	ForgetProfile(p)
	if n := testutil.CollectAndCount(ProfileReady); n != 1 {
		t.Errorf("%d readiness series after ForgetProfile; want the other profile's only", n)
	}
	if n := testutil.CollectAndCount(CAExpiry); n != 1 {
		t.Errorf("%d CA expiry series after ForgetProfile; want the other profile's only", n)
	}
	ForgetProfile(other)
}
