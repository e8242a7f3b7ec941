package controllers_test

import (
	"crypto"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/micromdm"
)

// TestPassthroughMicroMDM: an approved request for a SCEPProfile in
// Passthrough mode is enrolled at MicroMDM (no challenge); the profile shows
// what the server said; unapproved and denied requests are never sent.
func TestPassthroughMicroMDM(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := micromdm.Start(t, micromdm.Options{})
	startManager(t)
	c := apiServer(t).Client

	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mdm"},
		Spec: scepv1alpha1.SCEPProfileSpec{
			URL:           srv.URL,
			CAFingerprint: scep.FingerprintOf(srv.CA, crypto.SHA1).Hex(),
			Subject:       "CN=%certificatename%.%namespace%",
			SubjectAltNames: []scepv1alpha1.SubjectAltName{
				{Type: scepv1alpha1.SANTypeDNSName, Value: "%certificatename%.%namespace%.svc.%domainname%"},
			},
		},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	cond := waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	if cond.Reason != "Checked" {
		t.Errorf("Ready reason = %s", cond.Reason)
	}
	st := p.Status
	if len(st.CACertificates) != 1 || st.CACertificates[0].Role != "CA" || st.CACertificates[0].SHA256Fingerprint != scep.FingerprintOf(srv.CA, crypto.SHA256).Hex() ||
		st.CAExpiry == nil || !st.CAExpiry.Time.Equal(srv.CA.NotAfter.Truncate(time.Second)) || len(st.Capabilities) == 0 || st.LastCheckTime == nil {
		t.Errorf("status = %+v", st)
	}
	var signerSecret corev1.Secret
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: st.SignerSecretName}, &signerSecret); err != nil || signerSecret.Type != corev1.SecretTypeTLS {
		t.Fatalf("signer Secret %q: %v", st.SignerSecretName, err)
	}

	tmpl := func(cn string) scep.CSRTemplate {
		return scep.CSRTemplate{Subject: pkix.Name{CommonName: cn + "." + ns}, DNSNames: []string{cn + "." + ns + ".svc.cluster.local"}}
	}
	ann := func(cert string) map[string]string { return map[string]string{cmapi.CertificateNameKey: cert} }
	unapproved := request(t, ns, "unapproved-1", refTo(p), csrPEM(t, tmpl("unapproved"), rsaKey(2048, 1)), ann("unapproved"))
	denied := request(t, ns, "denied-1", refTo(p), csrPEM(t, tmpl("denied"), rsaKey(2048, 2)), ann("denied"))
	setApproval(t, denied, false)
	web := request(t, ns, "web-1", refTo(p), csrPEM(t, tmpl("web"), rsaKey(2048, 0)), ann("web"))
	setApproval(t, web, true)

	web = waitRequest(t, web, 30*time.Second)
	leaf := issued(t, web, srv.CA)
	if leaf.Subject.CommonName != "web."+ns {
		t.Errorf("subject = %v", leaf.Subject)
	}
	// Nothing is written on the request before or after a steady enrollment.
	if web.Annotations[signer.AnnotationState] != "" {
		t.Errorf("state written on a request issued at the first attempt: %q", web.Annotations[signer.AnnotationState])
	}
	if srv.PKIMessages("PKCSReq") != 1 {
		t.Errorf("server saw %d PKCSReq, want 1 (only the approved request)", srv.PKIMessages("PKCSReq"))
	}
	for _, cr := range []*cmapi.CertificateRequest{unapproved, denied} {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(cr), cr); err != nil {
			t.Fatal(err)
		}
		if ready := crCondition(cr, cmapi.CertificateRequestConditionReady); ready != nil && ready.Status == "True" {
			t.Errorf("%s was issued", cr.Name)
		}
		if cr.Annotations[signer.AnnotationState] != "" {
			t.Errorf("%s has transaction state", cr.Name)
		}
	}
	// The steady state costs one round trip: caps and CA certificates come
	// from the profile check.
	if got := srv.Requests("PKIOperation"); got != 1 {
		t.Errorf("PKIOperation requests = %d", got)
	}
	if !strings.Contains(string(web.Status.CA), "BEGIN CERTIFICATE") {
		t.Errorf("status.ca = %q", web.Status.CA)
	}

	// Metrics: one issued enrollment, one PKIOperation answered 200, the CA's expiry.
	profileKey := "SCEPProfile " + ns + "/mdm"
	if v := testutil.ToFloat64(metrics.Enrollments.WithLabelValues(profileKey, metrics.ResultIssued)); v != 1 {
		t.Errorf("scep_enrollments_total{result=issued} = %v", v)
	}
	if v := testutil.ToFloat64(metrics.ServerRequests.WithLabelValues(profileKey, "PKIOperation", "200")); v != 1 {
		t.Errorf("scep_server_requests_total{operation=PKIOperation} = %v", v)
	}
	if v := testutil.ToFloat64(metrics.CAExpiry.WithLabelValues(profileKey, "CA", scep.FingerprintOf(srv.CA, crypto.SHA256).Hex())); v != float64(srv.CA.NotAfter.Unix()) {
		t.Errorf("scep_ca_certificate_expiry_timestamp_seconds = %v", v)
	}
}
