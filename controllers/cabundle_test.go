package controllers_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestCABundlePublished: a ClusterSCEPProfile publishes the CA its server
// serves (not the RA certificates) to a labelled ConfigMap in the trust
// namespace, adds the next CA while the server announces it (the overlap)
// and removes it when the profile is deleted. A SCEPProfile publishes
// nothing unless the admin allows it; a ConfigMap that is not the
// operator's is never overwritten; a leftover bundle of a profile deleted
// while no operator ran is swept at start.
func TestCABundlePublished(t *testing.T) {
	ns := namespace(t)
	trustNS := namespace(t)
	c := apiServer(t).Client
	srv := scepserver.Start(t, scepserver.Behavior{RASplit: true})

	// Left by a profile deleted while no operator ran.
	gone := profiles.Key{Kind: "ClusterSCEPProfile", Name: ns + "-gone"}
	leftover := bundleConfigMap(trustNS, gone, controllers.CABundleCluster)
	// A ConfigMap of a bundle's name that the operator did not write.
	taken := profiles.Key{Kind: "ClusterSCEPProfile", Name: ns + "-taken"}
	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: trustNS, Name: controllers.CABundleName(taken)}, Data: map[string]string{"ca.crt": "not ours"}}
	for _, cm := range []*corev1.ConfigMap{leftover, foreign} {
		if err := c.Create(t.Context(), cm); err != nil {
			t.Fatal(err)
		}
	}
	startManager(t, func(o *controllers.Options) { o.CABundle.Namespace = trustNS })
	eventually(t, 30*time.Second, "the leftover bundle swept", func() (bool, string) {
		err := c.Get(t.Context(), client.ObjectKeyFromObject(leftover), &corev1.ConfigMap{})
		return apierrors.IsNotFound(err), "still there"
	})

	spec := scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL,
		CAFingerprint: "sha256:" + scep.FingerprintOf(srv.CA, crypto.SHA256).Hex()}
	cluster := &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: ns + "-corp"}, Spec: spec}
	tenant := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"}, Spec: spec}
	other := &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: taken.Name}, Spec: spec}
	for _, p := range []client.Object{cluster, tenant, other} {
		if err := c.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), p) })
	}
	key := profiles.KeyOf(cluster)
	cm := waitCABundle(t, trustNS, key, srv.CA)
	if cm.Labels[controllers.LabelCABundle] != controllers.CABundleCluster {
		t.Errorf("labels = %v, want %s=%s", cm.Labels, controllers.LabelCABundle, controllers.CABundleCluster)
	}
	waitProfileEvent(t, cluster, controllers.EventCABundlePublished)

	// The tenant's profile is Ready but not published; the foreign
	// ConfigMap is left as it was, with a Warning on the profile.
	waitProfile(t, tenant, metav1.ConditionTrue, 30*time.Second)
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: trustNS, Name: controllers.CABundleName(profiles.KeyOf(tenant))}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("a SCEPProfile's CA was published without --ca-bundle-namespaced-profiles (get: %v)", err)
	}
	waitProfileEvent(t, other, controllers.EventCABundleNotPublished)
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(foreign), foreign); err != nil || foreign.Data["ca.crt"] != "not ours" {
		t.Errorf("the foreign ConfigMap was changed: %v %v", foreign.Data, err)
	}

	// The overlap: the next CA joins the bundle while the server announces it.
	next, err := srv.AnnounceNextCA()
	if err != nil {
		t.Fatal(err)
	}
	recheck(t, cluster)
	waitCABundle(t, trustNS, key, srv.CA, next)

	// A pin that no longer matches takes the CA out of the bundle.
	patch := client.MergeFrom(cluster.DeepCopy())
	cluster.Spec.CAFingerprint = wrongFingerprint
	if err := c.Patch(t.Context(), cluster, patch); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, cluster, metav1.ConditionFalse, 30*time.Second)
	waitNoCABundle(t, trustNS, key)
	patch = client.MergeFrom(cluster.DeepCopy())
	cluster.Spec.CAFingerprint = spec.CAFingerprint
	if err := c.Patch(t.Context(), cluster, patch); err != nil {
		t.Fatal(err)
	}
	waitCABundle(t, trustNS, key, srv.CA, next)

	if err := c.Delete(t.Context(), cluster); err != nil {
		t.Fatal(err)
	}
	waitNoCABundle(t, trustNS, key)
}

// TestCABundleNamespacedProfiles: with --ca-bundle-namespaced-profiles a
// SCEPProfile publishes too, under the label value a Bundle can leave out,
// once its CA is verified (pinned, or https): an unpinned http profile
// publishes nothing.
func TestCABundleNamespacedProfiles(t *testing.T) {
	ns := namespace(t)
	trustNS := namespace(t)
	c := apiServer(t).Client
	srv := scepserver.Start(t, scepserver.Behavior{})
	startManager(t, func(o *controllers.Options) {
		o.CABundle = controllers.CABundleOptions{Namespace: trustNS, NamespacedProfiles: true}
	})
	p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL}}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), p) })
	// Unpinned over http: whoever answers chose the CA; nothing goes out.
	waitProfileEvent(t, p, controllers.EventCABundleNotPublished)
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: trustNS, Name: controllers.CABundleName(profiles.KeyOf(p))}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("an unpinned http profile's CA was published (get: %v)", err)
	}
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.CAFingerprint = "sha256:" + scep.FingerprintOf(srv.CA, crypto.SHA256).Hex()
	if err := c.Patch(t.Context(), p, patch); err != nil {
		t.Fatal(err)
	}
	cm := waitCABundle(t, trustNS, profiles.KeyOf(p), srv.CA)
	if cm.Labels[controllers.LabelCABundle] != controllers.CABundleNamespaced {
		t.Errorf("labels = %v, want %s=%s", cm.Labels, controllers.LabelCABundle, controllers.CABundleNamespaced)
	}
	if err := c.Delete(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitNoCABundle(t, trustNS, profiles.KeyOf(p))
}

// TestClusterTrustBundle: with ClusterTrustBundles on (and no ConfigMap
// namespace), a ClusterSCEPProfile's CA, and the next CA while announced,
// go into a ClusterTrustBundle named for its signer; a SCEPProfile never
// gets one; deleting the profile deletes it.
func TestClusterTrustBundle(t *testing.T) {
	ns := namespace(t)
	c := apiServer(t).Client
	srv := scepserver.Start(t, scepserver.Behavior{RASplit: true})
	startManager(t, func(o *controllers.Options) { o.CABundle.ClusterTrustBundles = true })
	spec := scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL,
		CAFingerprint: "sha256:" + scep.FingerprintOf(srv.CA, crypto.SHA256).Hex()}
	cluster := &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: ns + "-ctb"}, Spec: spec}
	tenant := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"}, Spec: spec}
	for _, p := range []client.Object{cluster, tenant} {
		if err := c.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), p) })
	}
	name := controllers.ClusterTrustBundleName(cluster.Name)
	waitTrustBundle := func(want ...*x509.Certificate) {
		t.Helper()
		var fps []string
		for _, w := range want {
			fps = append(fps, scep.FingerprintOf(w, crypto.SHA256).Hex())
		}
		slices.Sort(fps)
		eventually(t, 30*time.Second, "ClusterTrustBundle "+name, func() (bool, string) {
			var ctb certificatesv1.ClusterTrustBundle
			if err := c.Get(t.Context(), client.ObjectKey{Name: name}, &ctb); err != nil {
				return false, err.Error()
			}
			if ctb.Spec.SignerName != controllers.ClusterSignerName(cluster.Name) {
				return false, "signerName " + ctb.Spec.SignerName
			}
			return slices.Equal(pemFingerprints(t, []byte(ctb.Spec.TrustBundle)), fps), ctb.Spec.TrustBundle
		})
	}
	waitTrustBundle(srv.CA)
	next, err := srv.AnnounceNextCA()
	if err != nil {
		t.Fatal(err)
	}
	recheck(t, cluster)
	waitTrustBundle(srv.CA, next)

	waitProfile(t, tenant, metav1.ConditionTrue, 30*time.Second)
	var list certificatesv1.ClusterTrustBundleList
	if err := c.List(t.Context(), &list); err != nil {
		t.Fatal(err)
	}
	for _, ctb := range list.Items {
		if strings.Contains(ctb.Annotations[controllers.AnnotationCABundleProfile], "/"+ns+"/") {
			t.Errorf("a SCEPProfile got ClusterTrustBundle %s", ctb.Name)
		}
	}

	if err := c.Delete(t.Context(), cluster); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "no ClusterTrustBundle "+name, func() (bool, string) {
		err := c.Get(t.Context(), client.ObjectKey{Name: name}, &certificatesv1.ClusterTrustBundle{})
		return apierrors.IsNotFound(err), "still there"
	})
}

// TestCABundleName: SCEPProfile ns/name and ClusterSCEPProfile names never
// share a ConfigMap, and every name is a valid ConfigMap name.
func TestCABundleName(t *testing.T) {
	long := strings.Repeat("a", 253)
	keys := []profiles.Key{
		{Kind: "ClusterSCEPProfile", Name: "ns.a.b"},
		{Kind: "ClusterSCEPProfile", Name: "a.b"},
		{Kind: "SCEPProfile", Namespace: "a", Name: "b"},
		{Kind: "SCEPProfile", Namespace: "a-b", Name: "c"},
		{Kind: "SCEPProfile", Namespace: "a", Name: "b-c"},
		{Kind: "ClusterSCEPProfile", Name: long},
		{Kind: "ClusterSCEPProfile", Name: long[:252] + "b"},
		{Kind: "ClusterSCEPProfile", Name: strings.Repeat("a", 195) + ".-" + strings.Repeat("b", 56)},
	}
	if got, want := controllers.ClusterTrustBundleName("corp"), "clusterscepprofiles.scep.certificates.dev:corp:ca"; got != want {
		t.Errorf("ClusterTrustBundleName(corp) = %q, want %q", got, want)
	}
	if got := controllers.ClusterTrustBundleName(long); got != "" {
		t.Errorf("ClusterTrustBundleName of a 253-character name = %q, want none", got)
	}
	seen := map[string]profiles.Key{}
	for _, k := range keys {
		name := controllers.CABundleName(k)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("%s: ConfigMap name %q: %v", k, name, errs)
		}
		if prev, ok := seen[name]; ok {
			t.Errorf("%s and %s share ConfigMap %s", prev, k, name)
		}
		seen[name] = k
	}
}

// bundleConfigMap is a CA bundle as the operator writes it for k.
func bundleConfigMap(ns string, k profiles.Key, value string) *corev1.ConfigMap {
	ref := k.Kind + "/" + k.Name
	if k.Namespace != "" {
		ref = k.Kind + "/" + k.Namespace + "/" + k.Name
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: controllers.CABundleName(k),
		Labels:      map[string]string{controllers.LabelCABundle: value},
		Annotations: map[string]string{controllers.AnnotationCABundleProfile: ref}},
		Data: map[string]string{controllers.CABundleKey: "stale"}}
}

// waitCABundle waits until k's CA bundle holds exactly want, in any order.
func waitCABundle(t *testing.T, ns string, k profiles.Key, want ...*x509.Certificate) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{}
	eventually(t, 30*time.Second, "the CA bundle of "+k.String(), func() (bool, string) {
		if err := apiServer(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: controllers.CABundleName(k)}, cm); err != nil {
			return false, err.Error()
		}
		got := pemFingerprints(t, []byte(cm.Data[controllers.CABundleKey]))
		var fps []string
		for _, c := range want {
			fps = append(fps, scep.FingerprintOf(c, crypto.SHA256).Hex())
		}
		slices.Sort(fps)
		return slices.Equal(got, fps), "holds " + cm.Data[controllers.CABundleKey]
	})
	return cm
}

// waitNoCABundle waits until k has no CA bundle.
func waitNoCABundle(t *testing.T, ns string, k profiles.Key) {
	t.Helper()
	eventually(t, 30*time.Second, "no CA bundle of "+k.String(), func() (bool, string) {
		err := apiServer(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: controllers.CABundleName(k)}, &corev1.ConfigMap{})
		return apierrors.IsNotFound(err), "still there"
	})
}

// pemFingerprints returns the sorted SHA-256 fingerprints of a PEM bundle.
func pemFingerprints(t *testing.T, b []byte) []string {
	t.Helper()
	var fps []string
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		fps = append(fps, scep.FingerprintOf(c, crypto.SHA256).Hex())
	}
	slices.Sort(fps)
	return fps
}

// TestCABundleConfigMapRefBadInput: tls.caBundleConfigMapRef that cannot be
// used says why, naming the ConfigMap in the profile's own namespace.
func TestCABundleConfigMapRefBadInput(t *testing.T) {
	ns := namespace(t)
	c := apiServer(t).Client
	startManager(t)
	for name, data := range map[string]map[string]string{"no-ca": {"trust.pem": "x"}, "not-pem": {"ca.crt": "not a certificate"}} {
		if err := c.Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ configMap, want string }{
		{"missing", "spec.tls.caBundleConfigMapRef: ConfigMap " + ns + "/missing not found"},
		{"no-ca", `ConfigMap ` + ns + `/no-ca has no key "ca.crt"`},
		{"not-pem", "spec.tls.caBundleConfigMapRef: holds no PEM certificate"},
	} {
		p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.configMap},
			Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: "https://127.0.0.1:1/scep",
				TLS: &scepv1alpha1.TLSConfig{CABundleConfigMapRef: &scepv1alpha1.ConfigMapKeySelector{Name: tc.configMap}}}}
		if err := c.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), p) })
		cond := waitProfile(t, p, metav1.ConditionFalse, 30*time.Second)
		if cond.Reason != controllers.ReasonInvalidSpec || !strings.Contains(cond.Message, tc.want) {
			t.Errorf("%s: Ready = %s: %s; want InvalidSpec with %q", tc.configMap, cond.Reason, cond.Message, tc.want)
		}
	}
}
