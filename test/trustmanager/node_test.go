package trustmanager_test

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/node"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stack"
)

// TestPodMountsClusterTrustBundle: on a real node (kubelet v1.37.2 and
// containerd on this machine), a Pod takes its ca.crt from the
// ClusterSCEPProfile's ClusterTrustBundle through a projected
// clusterTrustBundle volume (by signer name and label), beside tls.crt and
// tls.key from the Certificate's Secret, and verifies the issued
// certificate with it. Machines that cannot run a node skip it, unless
// SCEP_NODE_E2E=required.
func TestPodMountsClusterTrustBundle(t *testing.T) {
	root := envtest.RepoRoot(t)
	node.SkipIfUnavailable(t, root)
	ctx := t.Context()
	const ns = "ctb-node"
	s, err := stack.Up(ctx, stack.Options{
		Root:           root,
		APIServerFlags: node.APIServerFlags,
		HelmValues:     []string{"caDistribution.clusterTrustBundles=true"},
		OperatorOptions: func(o *controllers.Options) {
			o.CABundle = controllers.CABundleOptions{ClusterTrustBundles: true}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Down)
	n := node.StartForTest(t, node.Options{Root: root, Kubeconfig: s.Kubeconfig, Images: []node.Image{node.CertwatchImage}})
	c := s.Client()
	if err := s.Env.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}

	srv := scepserver.Start(t, scepserver.Behavior{})
	profile := &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: "node-ca"},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL,
			CAFingerprint: scep.FingerprintOf(srv.CA, crypto.SHA256).Hex()}}
	if err := c.Create(ctx, profile); err != nil {
		t.Fatal(err)
	}
	waitClusterTrustBundle(t, c, profile.Name, srv.CA)
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: cmapi.CertificateSpec{SecretName: "web-tls", CommonName: "web." + ns,
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048},
			IssuerRef:  cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: "ClusterSCEPProfile", Name: profile.Name}},
	}
	if err := c.Create(ctx, crt); err != nil {
		t.Fatal(err)
	}
	var leaf *x509.Certificate
	eventually(t, "the Certificate's Secret", func() (bool, string) {
		var sec corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: crt.Spec.SecretName}, &sec); err != nil {
			return false, err.Error()
		}
		b, _ := pem.Decode(sec.Data["tls.crt"])
		if b == nil {
			return false, "no tls.crt"
		}
		leaf, err = x509.ParseCertificate(b.Bytes)
		return err == nil, "tls.crt does not parse"
	})

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.PodSpec{
			NodeName: node.Name, HostNetwork: true, AutomountServiceAccountToken: ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](2),
			Containers: []corev1.Container{{
				Name: "certwatch", Image: node.CertwatchImage.Ref, ImagePullPolicy: corev1.PullNever,
				Args:         []string{"-dir", node.CertwatchMountPath},
				VolumeMounts: []corev1.VolumeMount{{Name: "tls", MountPath: node.CertwatchMountPath, ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: crt.Spec.SecretName},
						Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "tls.crt"}, {Key: "tls.key", Path: "tls.key"}}}},
					{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{
						SignerName:    ptr.To(controllers.ClusterSignerName(profile.Name)),
						LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{controllers.LabelCABundle: controllers.CABundleCluster}},
						Path:          "ca.crt",
					}},
				},
			}}}},
		},
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if _, err := n.WaitRunning(ctx, ns, pod.Name, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	serial := leaf.SerialNumber.Text(16)
	sum := sha256.Sum256(srv.CA.Raw)
	caSHA := hex.EncodeToString(sum[:]) // certwatch's ca-sha256: lower-case hex of the DER
	eventually(t, "the pod's report of serial "+serial, func() (bool, string) {
		logs, err := n.Logs(ctx, ns, pod.Name)
		if err != nil {
			return false, err.Error()
		}
		reports, err := node.ParseReports(logs)
		if err != nil || len(reports) == 0 {
			return false, "no report yet"
		}
		r := reports[len(reports)-1]
		return r.Serial == serial && r.ChainVerified && r.CASHA256 == caSHA && r.Err == "", r.Line
	})
}
