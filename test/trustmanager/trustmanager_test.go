package trustmanager_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	trustapi "github.com/cert-manager/trust-manager/pkg/apis/trust/v1alpha1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stack"
	"github.com/scep-operator/scep-operator/test/trustmanager"
)

const (
	releaseNS = "scep-operator"
	appsNS    = "apps"
	// bundleName is the trust-manager Bundle, and so its target ConfigMaps.
	bundleName = "scep-ca"
)

// TestBundleCarriesSCEPCA runs the operator with the chart's RBAC
// (caDistribution enabled, SCEPProfiles allowed to publish) beside
// trust-manager's real Bundle controller. A Bundle sourcing the
// ClusterSCEPProfiles' label:
//   - writes target ConfigMaps holding the SCEP CA, not its RA certificates;
//   - does not carry a tenant SCEPProfile's CA (published under the
//     "namespaced" label value the Bundle does not select);
//   - is what a second profile trusts for its https SCEP server, whose TLS
//     certificate the SCEP CA issued (tls.caBundleConfigMapRef);
//   - holds the current and the announced next CA during a rollover.
func TestBundleCarriesSCEPCA(t *testing.T) {
	ctx := t.Context()
	tmCRDs, err := trustmanager.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	s, err := stack.Up(ctx, stack.Options{
		ReleaseNamespace: releaseNS,
		HelmValues:       []string{"caDistribution.enabled=true", "caDistribution.namespacedProfiles=true", "caDistribution.clusterTrustBundles=true", "rbac.secretNamespaces={" + appsNS + "}"},
		ExtraCRDPaths:    []string{tmCRDs},
		// The in-process operator reads no manager args: what the chart's
		// caDistribution values pass as flags.
		OperatorOptions: func(o *controllers.Options) {
			o.CABundle = controllers.CABundleOptions{Namespace: trustmanager.DefaultTrustNamespace, NamespacedProfiles: true, ClusterTrustBundles: true}
		},
		// No Certificate is issued here: one cheap cert-manager controller.
		CertManagerControllers: []string{"issuers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Down)
	stopTM, err := trustmanager.Start(ctx, s.Env.Config, trustmanager.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopTM)
	c := s.Client()

	corp := scepserver.Start(t, scepserver.Behavior{RASplit: true})
	tenantSrv := scepserver.Start(t, scepserver.Behavior{})
	pin := func(ca *x509.Certificate) string { return "sha256:" + scep.FingerprintOf(ca, crypto.SHA256).Hex() }
	spec := func(url string) scepv1alpha1.SCEPProfileSpec {
		return scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: url}
	}
	corpSpec := spec(corp.URL)
	corpSpec.CAFingerprint = pin(corp.CA)
	corpProfile := &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: "corp"}, Spec: corpSpec}
	tenantSpec := spec(tenantSrv.URL)
	tenantSpec.CAFingerprint = pin(tenantSrv.CA)
	tenant := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: "tenant"}, Spec: tenantSpec}
	for _, p := range []client.Object{corpProfile, tenant} {
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// The tenant's CA is published (this install allows it), under the
	// label value the Bundle leaves out.
	eventually(t, "the tenant's CA bundle", func() (bool, string) {
		var cm corev1.ConfigMap
		err := c.Get(ctx, client.ObjectKey{Namespace: trustmanager.DefaultTrustNamespace, Name: "scep-ca-ns." + appsNS + ".tenant"}, &cm)
		if err != nil {
			return false, err.Error()
		}
		return cm.Labels[controllers.LabelCABundle] == controllers.CABundleNamespaced, fmt.Sprint(cm.Labels)
	})

	b := &trustapi.Bundle{
		ObjectMeta: metav1.ObjectMeta{Name: bundleName},
		Spec: trustapi.BundleSpec{
			Sources: []trustapi.BundleSource{{ConfigMap: &trustapi.SourceObjectKeySelector{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{controllers.LabelCABundle: controllers.CABundleCluster}},
				Key:      controllers.CABundleKey,
			}}},
			Target: trustapi.BundleTarget{
				ConfigMap: &trustapi.TargetTemplate{Key: "ca.crt"},
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{appsNS, releaseNS},
				}}},
			},
		},
	}
	// The stack's scheme is shared with the running operator: Bundles get
	// a client of their own.
	scheme := runtime.NewScheme()
	if err := trustapi.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	bundles, err := client.New(s.Env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := bundles.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	waitTarget(t, c, appsNS, corp.CA)
	// The operator, with the chart's RBAC, also wrote the profile's
	// ClusterTrustBundle: the API server's ClusterTrustBundleAttest admission
	// let it name the profile's signer.
	waitClusterTrustBundle(t, c, corpProfile.Name, corp.CA)
	// And attest is what stops it from naming any other signer.
	asOperator, err := client.New(s.OperatorConfig, client.Options{Scheme: s.Env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	pemCA := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: corp.CA.Raw}))
	foreign := &certificatesv1.ClusterTrustBundle{ObjectMeta: metav1.ObjectMeta{Name: "example.com:other:ca"},
		Spec: certificatesv1.ClusterTrustBundleSpec{SignerName: "example.com/other", TrustBundle: pemCA}}
	if err := asOperator.Create(ctx, foreign); !apierrors.IsForbidden(err) {
		t.Errorf("the operator created a ClusterTrustBundle for signer example.com/other: %v, want Forbidden", err)
	}

	// A SCEP server over https whose TLS certificate the SCEP CA issued
	// (as an NDES server's usually is): a profile trusts it through the
	// target trust-manager wrote into the cluster resource namespace.
	tlsSrv := httptest.NewUnstartedServer(corp)
	tlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert(t, corp.CA, corp.CAKey)}, MinVersion: tls.VersionTLS12}
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	tlsSpec := spec(tlsSrv.URL + "/scep")
	tlsSpec.TLS = &scepv1alpha1.TLSConfig{CABundleConfigMapRef: &scepv1alpha1.ConfigMapKeySelector{Name: bundleName}}
	viaTLS := &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: "corp-https"}, Spec: tlsSpec}
	if err := c.Create(ctx, viaTLS); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, viaTLS)

	// The overlap: the next CA joins the bundle while it is announced.
	next, err := corp.AnnounceNextCA()
	if err != nil {
		t.Fatal(err)
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"test.scep.certificates.dev/recheck":%q}}}`, time.Now().Format(time.RFC3339Nano))
	if err := c.Patch(ctx, corpProfile, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	waitTarget(t, c, appsNS, corp.CA, next)
	waitTarget(t, c, releaseNS, corp.CA, next)
	waitClusterTrustBundle(t, c, corpProfile.Name, corp.CA, next)
}

// waitClusterTrustBundle waits until the ClusterSCEPProfile profile's
// ClusterTrustBundle holds exactly want, under its signer name.
func waitClusterTrustBundle(t *testing.T, c client.Client, profile string, want ...*x509.Certificate) {
	t.Helper()
	fps := sortedFingerprints(want)
	name := controllers.ClusterTrustBundleName(profile)
	eventually(t, "ClusterTrustBundle "+name, func() (bool, string) {
		var ctb certificatesv1.ClusterTrustBundle
		if err := c.Get(t.Context(), client.ObjectKey{Name: name}, &ctb); err != nil {
			return false, err.Error()
		}
		got, err := fingerprints([]byte(ctb.Spec.TrustBundle))
		if err != nil {
			return false, err.Error()
		}
		return ctb.Spec.SignerName == controllers.ClusterSignerName(profile) && slices.Equal(got, fps), fmt.Sprintf("signer %s, holds %v, want %v", ctb.Spec.SignerName, got, fps)
	})
}

// sortedFingerprints returns the sorted SHA-256 fingerprints of certs.
func sortedFingerprints(certs []*x509.Certificate) []string {
	var fps []string
	for _, c := range certs {
		fps = append(fps, scep.FingerprintOf(c, crypto.SHA256).Hex())
	}
	slices.Sort(fps)
	return fps
}

// serverCert issues a TLS certificate for 127.0.0.1 from ca.
func serverCert(t *testing.T, ca *x509.Certificate, caKey crypto.Signer) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "scep.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// waitTarget waits until the Bundle's target ConfigMap in ns holds exactly
// the certificates want.
func waitTarget(t *testing.T, c client.Client, ns string, want ...*x509.Certificate) {
	t.Helper()
	fps := sortedFingerprints(want)
	eventually(t, "trust-manager's target in "+ns, func() (bool, string) {
		var cm corev1.ConfigMap
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: bundleName}, &cm); err != nil {
			return false, err.Error()
		}
		got, err := fingerprints([]byte(cm.Data["ca.crt"]))
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, fps), fmt.Sprintf("holds %v, want %v", got, fps)
	})
}

// waitReady waits for p's Ready condition to be True.
func waitReady(t *testing.T, c client.Client, p scepv1alpha1.Profile) {
	t.Helper()
	eventually(t, p.GetName()+" Ready", func() (bool, string) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
			return false, err.Error()
		}
		cond := meta.FindStatusCondition(p.GetStatus().Conditions, "Ready")
		if cond == nil {
			return false, "no Ready condition"
		}
		return cond.Status == metav1.ConditionTrue, cond.Reason + ": " + cond.Message
	})
}

// fingerprints returns the sorted SHA-256 fingerprints of a PEM bundle.
func fingerprints(b []byte) ([]string, error) {
	var out []string
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, scep.FingerprintOf(cert, crypto.SHA256).Hex())
	}
	slices.Sort(out)
	return out, nil
}

// eventually polls cond every 100 ms for up to a minute (a failed check is
// retried within a minute, and trust-manager reacts to events).
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
