package attack

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestCABundleTenant (issue 13: CA distribution): with CA bundles and
// ClusterTrustBundles on (namespaced profiles not allowed to publish, the
// default), a tenant tries to get a CA of its choosing into what the
// cluster trusts, and to read another namespace's ConfigMap as its TLS
// trust. Only the ClusterSCEPProfile's pinned CA is published.
func TestCABundleTenant(t *testing.T) {
	corp := scepserver.Start(t, scepserver.Behavior{})
	own := scepserver.Start(t, scepserver.Behavior{}) // the tenant's server and CA
	cp := clusterProfile(t, "attack-ca-bundle", corp, nil)
	eventually(t, readyTimeout, "the ClusterSCEPProfile's CA bundle", func() (bool, string) {
		held := publishedCAs(t)
		return held[fp(corp.CA)], "not yet published"
	})

	// Row: the tenant's own SCEPProfile, pinned to its own CA, is Ready;
	// its CA reaches no CA bundle and no ClusterTrustBundle.
	p := tenantProfile(t, "own-ca", own.URL, own.CA, nil)
	waitProfile(t, p, metav1.ConditionTrue)
	askCheck(t, p)
	waitProfile(t, p, metav1.ConditionTrue)
	if held := publishedCAs(t); held[fp(own.CA)] {
		t.Errorf("the tenant's CA was published")
	}
	if err := admin(t).Get(t.Context(), client.ObjectKey{Namespace: trustNamespace, Name: controllers.CABundleName(profiles.KeyOf(p))}, &corev1.ConfigMap{}); err == nil {
		t.Errorf("a CA bundle ConfigMap exists for the tenant's SCEPProfile")
	}

	// Row: a SCEPProfile naming, as its TLS trust, the ConfigMap name of the
	// ClusterSCEPProfile's bundle (which exists in the trust namespace) is
	// read in the tenant's namespace only: not found.
	viaTLS := tenantProfile(t, "foreign-trust", "https://127.0.0.1:1/scep", nil, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.TLS = &scepv1alpha1.TLSConfig{CABundleConfigMapRef: &scepv1alpha1.ConfigMapKeySelector{Name: controllers.CABundleName(profiles.KeyOf(cp))}}
	})
	cond := waitProfile(t, viaTLS, metav1.ConditionFalse)
	if cond.Reason != controllers.ReasonInvalidSpec || !strings.Contains(cond.Message, "ConfigMap "+tenant+"/") {
		t.Errorf("Ready = %s: %s; want InvalidSpec naming a ConfigMap in %s", cond.Reason, cond.Message, tenant)
	}
}

// TestCABundleUnpinnedHTTP (issue 13: CA distribution): a ClusterSCEPProfile
// over http without a pin (an admin's choice; a Warning says so) takes its
// CA from whoever answers on the path. That CA is not published, so a
// network attacker cannot make the cluster's workloads trust it.
func TestCABundleUnpinnedHTTP(t *testing.T) {
	onPath := scepserver.Start(t, scepserver.Behavior{}) // answers for the real server
	cp := clusterProfile(t, "attack-ca-bundle-unpinned", onPath, func(s *scepv1alpha1.SCEPProfileSpec) { s.CAFingerprint = "" })
	waitEvent(t, "ClusterSCEPProfile", cp, controllers.EventCABundleNotPublished, "without caFingerprint")
	if held := publishedCAs(t); held[fp(onPath.CA)] {
		t.Errorf("the CA of an unpinned http profile was published")
	}
}

// publishedCAs returns the SHA-256 fingerprints of every certificate in the
// CA bundle ConfigMaps of the trust namespace and in every ClusterTrustBundle.
func publishedCAs(t *testing.T) map[string]bool {
	t.Helper()
	held := map[string]bool{}
	var cms corev1.ConfigMapList
	if err := admin(t).List(t.Context(), &cms, client.InNamespace(trustNamespace)); err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		for _, v := range cm.Data {
			addPEM(held, v)
		}
	}
	var ctbs certificatesv1.ClusterTrustBundleList
	if err := admin(t).List(t.Context(), &ctbs); err != nil {
		t.Fatal(err)
	}
	for _, ctb := range ctbs.Items {
		addPEM(held, ctb.Spec.TrustBundle)
	}
	return held
}

func addPEM(held map[string]bool, s string) {
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			held[fp(c)] = true
		}
	}
}

// fp is c's SHA-256 fingerprint.
func fp(c *x509.Certificate) string { return scep.FingerprintOf(c, crypto.SHA256).Hex() }
