// Package e2e runs the whole product: the Helm chart rendered and applied to
// a real API server, cert-manager's real controllers making keys, requests
// and Secrets (its approver approving), real MicroMDM SCEP servers, and
// scep-operator with exactly the chart's RBAC.
package e2e

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"io"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/stack"
)

const (
	workloads = "apps"  // Rebuild is granted here by the chart values
	other     = "other" // and not here
	challenge = "e2e-challenge-91c2"
)

func TestEndToEnd(t *testing.T) {
	ctx := t.Context()
	st, err := stack.Up(ctx, stack.Options{
		HelmValues:  []string{"rebuild.namespaces={" + workloads + "}"},
		Progress:    func(f string, a ...any) { t.Logf(f, a...) },
		OperatorLog: io.MultiWriter(testWriter{t}, &operatorLogs),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Down)
	c := st.Client()
	for _, ns := range []string{workloads, other} {
		if err := st.Env.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("the operator runs with the chart's RBAC only", func(t *testing.T) {
		op, err := client.New(st.OperatorConfig, client.Options{Scheme: st.Env.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		forbidden := map[string]error{
			"list Secrets cluster-wide":                 op.List(ctx, &corev1.SecretList{}),
			"get a Secret where Rebuild is not granted": op.Get(ctx, client.ObjectKey{Namespace: other, Name: "x"}, &corev1.Secret{}),
			"delete a CertificateRequest":               op.DeleteAllOf(ctx, &cmapi.CertificateRequest{}, client.InNamespace(workloads)),
			"create a ClusterRole":                      op.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "escalate"}}),
		}
		for what, err := range forbidden {
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: err = %v, want Forbidden", what, err)
			}
		}
		// Granted: a Secret in the Rebuild namespace may be read (NotFound, not Forbidden).
		if err := op.Get(ctx, client.ObjectKey{Namespace: workloads, Name: "x"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			t.Errorf("get a Secret in %s: err = %v, want NotFound", workloads, err)
		}
	})

	t.Run("cert-manager may approve our signers, and may not once the chart's approver role is off", func(t *testing.T) {
		for _, signer := range []string{"scepprofiles.scep.certificates.dev/*", "clusterscepprofiles.scep.certificates.dev/*"} {
			if !mayApprove(t, st, signer) {
				t.Errorf("cert-manager may not approve %s", signer)
			}
		}
		if mayApprove(t, st, "issuers.cert-manager.io/*") {
			t.Errorf("the chart grants more than our signers")
		}
		// What the chart renders with approver.enabled=false lacks the
		// binding; removing the default one revokes the permission.
		var binding *rbacv1.ClusterRoleBinding
		for _, o := range st.Rendered {
			if o.GetKind() == "ClusterRoleBinding" && strings.Contains(o.GetName(), "approver") {
				binding = &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: o.GetName()}}
			}
		}
		if binding == nil {
			t.Fatal("the chart rendered no approver ClusterRoleBinding")
		}
		saved := &rbacv1.ClusterRoleBinding{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(binding), saved); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx, saved); err != nil {
			t.Fatal(err)
		}
		// The API server's RBAC authorizer reads bindings through its own
		// informers: a SubjectAccessReview right after the delete may still
		// see the binding (a clean-clone run once did, 10 ms after it).
		eventually(t, 30*time.Second, "the approver permission revoked with its binding", func() (bool, string) {
			return !mayApprove(t, st, "scepprofiles.scep.certificates.dev/*"), "still allowed without the approver binding"
		})
		saved.ResourceVersion, saved.UID = "", ""
		if err := c.Create(ctx, saved); err != nil {
			t.Fatal(err)
		}
		// The Certificates below need cert-manager's approval again.
		eventually(t, 30*time.Second, "the approver permission back with its binding", func() (bool, string) {
			return mayApprove(t, st, "scepprofiles.scep.certificates.dev/*"), "not allowed yet"
		})
	})

	open, err := st.StartSCEPServer("open", micromdm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	guarded, err := st.StartSCEPServer("guarded", micromdm.Options{Challenge: challenge})
	if err != nil {
		t.Fatal(err)
	}
	// Passthrough: a ClusterSCEPProfile for the server without a challenge.
	pass := &scepv1alpha1.ClusterSCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "open"},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true,
			URL:           open.URL,
			CAFingerprint: scep.FingerprintOf(open.CA, crypto.SHA256).Hex(),
			SubjectAltNames: []scepv1alpha1.SubjectAltName{
				{Type: scepv1alpha1.SANTypeDNSName, Value: "%certificatename%.%namespace%.svc.%domainname%"},
			},
		},
	}
	// Rebuild with a Static challenge: a SCEPProfile in the workload namespace.
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: workloads, Name: "scep-challenge"}, StringData: map[string]string{"password": challenge}}); err != nil {
		t.Fatal(err)
	}
	rebuild := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: workloads, Name: "guarded"},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubjectAltNames: true,
			URL:           guarded.URL,
			CAFingerprint: "sha1:" + scep.FingerprintOf(guarded.CA, crypto.SHA1).Hex(),
			Subject:       "CN=%certificatename%.%namespace%",
			CSRMode:       scepv1alpha1.CSRModeRebuild,
			Challenge:     scepv1alpha1.Challenge{Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: "scep-challenge"}},
		},
	}
	for _, p := range []client.Object{pass, rebuild} {
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name    string
		profile scepv1alpha1.Profile
		kind    string
		ca      *x509.Certificate
	}{
		{"passthrough", pass, "ClusterSCEPProfile", open.CA},
		{"rebuild", rebuild, "SCEPProfile", guarded.CA},
	} {
		t.Run(tc.name+" Certificate ends Ready with a matching key and chain", func(t *testing.T) {
			crt := certificate(tc.name, tc.kind, tc.profile.GetName())
			if err := c.Create(ctx, crt); err != nil {
				t.Fatal(err)
			}
			waitReady(t, c, crt, 90*time.Second)
			leaf := checkSecret(t, c, crt, tc.ca)

			t.Run("renewal as cmctl renew triggers it", func(t *testing.T) {
				renew(t, c, crt)
				eventually(t, 90*time.Second, "a new certificate in the Secret", func() (bool, string) {
					got := secretLeaf(t, c, crt)
					if got == nil {
						return false, "no certificate"
					}
					return got.SerialNumber.Cmp(leaf.SerialNumber) != 0, "serial " + got.SerialNumber.Text(16)
				})
				waitReady(t, c, crt, 30*time.Second)
				checkSecret(t, c, crt, tc.ca)
			})
		})
	}

	t.Run("a Certificate for a profile that is not Ready waits, then issues once it is fixed", func(t *testing.T) {
		broken := &scepv1alpha1.ClusterSCEPProfile{
			ObjectMeta: metav1.ObjectMeta{Name: "broken"},
			Spec:       scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: open.URL, CAFingerprint: strings.Repeat("00", 32)},
		}
		if err := c.Create(ctx, broken); err != nil {
			t.Fatal(err)
		}
		crt := certificate("waits", "ClusterSCEPProfile", "broken")
		if err := c.Create(ctx, crt); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "a request waiting for the profile", func() (bool, string) {
			var crs cmapi.CertificateRequestList
			if err := c.List(ctx, &crs, client.InNamespace(workloads)); err != nil {
				return false, err.Error()
			}
			for _, cr := range crs.Items {
				if cr.Annotations[cmapi.CertificateNameKey] != crt.Name {
					continue
				}
				for _, cond := range cr.Status.Conditions {
					if cond.Type == cmapi.CertificateRequestConditionReady {
						return cond.Reason == cmapi.CertificateRequestReasonPending && strings.Contains(cond.Message, "Waiting for issuer to become ready"), cond.Message
					}
				}
			}
			return false, "no request yet"
		})
		// A merge patch of the spec alone: the operator writes the
		// profile's status meanwhile, and an Update from a read a moment
		// earlier once conflicted with it (a flake-hunt run under the hog).
		orig := broken.DeepCopy()
		broken.Spec.CAFingerprint = scep.FingerprintOf(open.CA, crypto.MD5).Hex()
		if err := c.Patch(ctx, broken, client.MergeFrom(orig)); err != nil {
			t.Fatal(err)
		}
		waitReady(t, c, crt, 90*time.Second)
		checkSecret(t, c, crt, open.CA)
	})

	t.Run("no secret in the operator's logs, Events or statuses", func(t *testing.T) {
		sweepSecrets(t, c)
	})
}

// certificate is a workload's Certificate naming a profile.
func certificate(name, kind, profile string) *cmapi.Certificate {
	return &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: workloads, Name: name},
		Spec: cmapi.CertificateSpec{
			SecretName: name + "-tls",
			CommonName: name + "." + workloads,
			DNSNames:   []string{name + "." + workloads + ".svc.cluster.local"},
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048, RotationPolicy: cmapi.RotationPolicyAlways},
			IssuerRef:  cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: kind, Name: profile},
		},
	}
}

func waitReady(t *testing.T, c client.Client, crt *cmapi.Certificate, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "Certificate "+crt.Name+" Ready", func() (bool, string) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(crt), crt); err != nil {
			return false, err.Error()
		}
		return stack.IsReady(crt), stack.ReadyMessage(crt)
	})
}

// renew does what `cmctl renew` does: it sets the Issuing condition.
//
// It first waits for the last issuance to have finished. cert-manager's
// readiness controller marks the Certificate Ready as soon as the Secret
// holds the new certificate, before its issuing controller records the
// revision and removes the Issuing condition; a trigger set in between is
// consumed by that issuing controller's retry, which issues the old request
// again, and no renewal happens.
func renew(t *testing.T, c client.Client, crt *cmapi.Certificate) {
	t.Helper()
	eventually(t, 30*time.Second, "Certificate "+crt.Name+" issued (Ready, revision recorded, no Issuing condition)", func() (bool, string) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(crt), crt); err != nil {
			return false, err.Error()
		}
		for _, cond := range crt.Status.Conditions {
			if cond.Type == cmapi.CertificateConditionIssuing {
				return false, "Issuing " + string(cond.Status) + " " + cond.Reason
			}
		}
		if crt.Status.Revision == nil {
			return false, "no revision"
		}
		return stack.IsReady(crt), stack.ReadyMessage(crt)
	})
	// cert-manager may still be writing the Certificate's status.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(crt), crt); err != nil {
			return err
		}
		now := metav1.Now()
		issuing := cmapi.CertificateCondition{
			Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue, Reason: "ManuallyTriggered",
			Message: "Certificate re-issuance manually triggered", LastTransitionTime: &now,
		}
		// Like cmctl, set the condition, replacing one cert-manager may
		// still have there.
		replaced := false
		for i, cond := range crt.Status.Conditions {
			if cond.Type == cmapi.CertificateConditionIssuing {
				crt.Status.Conditions[i], replaced = issuing, true
			}
		}
		if !replaced {
			crt.Status.Conditions = append(crt.Status.Conditions, issuing)
		}
		return c.Status().Update(t.Context(), crt)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func secretLeaf(t *testing.T, c client.Client, crt *cmapi.Certificate) *x509.Certificate {
	t.Helper()
	var s corev1.Secret
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: crt.Namespace, Name: crt.Spec.SecretName}, &s); err != nil {
		return nil
	}
	b, _ := pem.Decode(s.Data["tls.crt"])
	if b == nil {
		return nil
	}
	leaf, _ := x509.ParseCertificate(b.Bytes)
	return leaf
}

// checkSecret asserts the Secret's tls.crt matches tls.key and chains to
// ca.crt, which is the SCEP CA.
func checkSecret(t *testing.T, c client.Client, crt *cmapi.Certificate, ca *x509.Certificate) *x509.Certificate {
	t.Helper()
	var s corev1.Secret
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: crt.Namespace, Name: crt.Spec.SecretName}, &s); err != nil {
		t.Fatal(err)
	}
	pair, err := tlsPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		t.Fatalf("tls.crt does not match tls.key: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.Data["ca.crt"]) {
		t.Fatalf("ca.crt holds no certificate")
	}
	if _, err := pair.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("tls.crt does not chain to ca.crt: %v", err)
	}
	if b, _ := pem.Decode(s.Data["ca.crt"]); b == nil || string(b.Bytes) != string(ca.Raw) {
		t.Errorf("ca.crt is not the SCEP server's CA")
	}
	return pair
}

func mayApprove(t *testing.T, st *stack.Stack, signer string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:cert-manager:cert-manager",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:cert-manager", "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: "cert-manager.io", Resource: "signers", Verb: "approve", Name: signer,
		},
	}}
	if err := st.Client().Create(t.Context(), sar); err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
