package main

import (
	"crypto"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestDoctorProfile checks --profile against a real API server: the profile
// and its Secrets are read with the kubeconfig and the server is reached as
// the operator would (pin, challenge Secret, TLS bundle Secret of a
// ClusterSCEPProfile in the cluster resource namespace); a profile the
// operator could not use is a FAIL naming the missing Secret.
func TestDoctorProfile(t *testing.T) {
	env := envtest.Start(t)
	ctx := t.Context()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := envtest.WriteKubeconfig(env.Config, kubeconfig); err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t, "team-a")
	ops := env.Namespace(t, "ops")
	const challenge = "profile-S3cret"

	srv := scepserver.Start(t, scepserver.Behavior{Challenge: challenge})
	for _, o := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "challenge"}, Data: map[string][]byte{"password": []byte(challenge)}},
		&scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "static"}, Spec: scepv1alpha1.SCEPProfileSpec{
			URL: srv.URL, AllowAnySubject: true, AllowAnySubjectAltNames: true, KeySize: 3072, CSRMode: scepv1alpha1.CSRModeRebuild,
			CAFingerprint: scep.FingerprintOf(srv.CA, crypto.SHA1).Hex(),
			Challenge:     scepv1alpha1.Challenge{Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: "challenge"}},
		}},
		&scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-secret"}, Spec: scepv1alpha1.SCEPProfileSpec{
			URL: srv.URL, AllowAnySubject: true, AllowAnySubjectAltNames: true, CSRMode: scepv1alpha1.CSRModeRebuild,
			CAFingerprint: scep.FingerprintOf(srv.CA, crypto.SHA256).Hex(),
			Challenge:     scepv1alpha1.Challenge{Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: "missing"}},
		}},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	out := doctorRun(t, 0, []string{"--profile", ns + "/static", "--kubeconfig", kubeconfig, "--enroll"},
		`^OK +profile +SCEPProfile team-a/static: http://127\.0\.0\.1:[0-9]+/scep, challenge Static, csrMode Rebuild, keySize 3072 \(Secrets in namespace team-a\)`,
		`^OK +pin +SHA-1 fingerprint .* matches CA`,
		`^OK +key size +every CA and RA RSA key has at least 3072 bits|^WARN +key size +CA .* below the floor of 3072 bits`,
		`^OK +enrollment +issued`)
	if strings.Contains(out, challenge) {
		t.Errorf("the report shows the challenge password:\n%s", out)
	}
	doctorRun(t, 1, []string{"--profile", ns + "/no-secret", "--kubeconfig", kubeconfig},
		`^FAIL +profile +the operator cannot use SCEPProfile team-a/no-secret: Secret team-a/missing not found`,
		`fix: create the Secret or key the profile names`)
	doctorRun(t, 1, []string{"--profile", ns + "/absent", "--kubeconfig", kubeconfig},
		`^FAIL +profile +reading SCEPProfile team-a/absent: .*not found`)

	// A ClusterSCEPProfile over https, trusting the server through a CA
	// bundle Secret in the cluster resource namespace.
	ca, caKey := testCA(t)
	tlsSrv := scepserver.Start(t, scepserver.Behavior{})
	url := tlsFront(t, tlsSrv, ca, caKey, []string{"127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	for _, o := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ops, Name: "scep-tls"}, Data: map[string][]byte{"ca.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})}},
		&scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: "corp"}, Spec: scepv1alpha1.SCEPProfileSpec{
			URL: url, AllowAnySubject: true, AllowAnySubjectAltNames: true,
			TLS: &scepv1alpha1.TLSConfig{CABundleSecretRef: &scepv1alpha1.SecretKeySelector{Name: "scep-tls"}},
		}},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	doctorRun(t, 0, []string{"--profile", "corp", "--kubeconfig", kubeconfig, "--cluster-resource-namespace", ops},
		`^OK +profile +ClusterSCEPProfile corp: https://`,
		`^OK +TLS chain +.* chains to spec\.tls\.caBundleSecretRef`,
		`^OK +pin +no CA pin; the server is trusted through TLS`,
		`^SKIP +enrollment +not tried`)
	doctorRun(t, 1, []string{"--profile", "corp", "--kubeconfig", kubeconfig, "--cluster-resource-namespace", ns},
		`^FAIL +profile +the operator cannot use ClusterSCEPProfile corp: Secret team-a/scep-tls not found`)
}
