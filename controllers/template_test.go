package controllers_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/ndes"
)

// TestNDESCertificateTemplate enrolls with the profile's key usage each of
// the three ways an MDM profile offers (Digital Signature, Key
// Encipherment, both): the emulator picks the template its registry names
// for that key usage, as NDES does, and the CSR carries the profile's
// certificateTemplate in the Microsoft template extension.
func TestNDESCertificateTemplate(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	startManager(t)
	srv := startNDES(t, ndes.Options{Templates: ndes.RegistryTemplates{Signature: "K8s-Signing", Encryption: "K8s-Encryption", GeneralPurpose: "K8s-Both"}})
	ndesCredentials(t, ns, "tmpl-agent", ndesUser, ndes.DefaultPassword)

	for i, tc := range []struct {
		name     string
		usages   []scepv1alpha1.KeyUsage
		ask      x509.KeyUsage
		template string
	}{
		{"Digital Signature", []scepv1alpha1.KeyUsage{scepv1alpha1.KeyUsageDigitalSignature}, x509.KeyUsageDigitalSignature, "K8s-Signing"},
		{"Key Encipherment", []scepv1alpha1.KeyUsage{scepv1alpha1.KeyUsageKeyEncipherment}, x509.KeyUsageKeyEncipherment, "K8s-Encryption"},
		{"both", []scepv1alpha1.KeyUsage{scepv1alpha1.KeyUsageDigitalSignature, scepv1alpha1.KeyUsageKeyEncipherment}, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, "K8s-Both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := ndesDynamicSpec(srv, "NTLM", "tmpl-agent")
			spec.KeyUsage = tc.usages
			spec.CertificateTemplate = "WebServer-K8s"
			name := []string{"tmpl-sign", "tmpl-enc", "tmpl-both"}[i]
			p := ndesProfile(t, ns, name, spec, nil)
			waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)

			key := rsaKey(2048, 10+i)
			pendingKeyFor(t, ns, name, p, key)
			csr := csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name + ".example"}, KeyUsage: tc.ask}, key)
			cr := request(t, ns, name+"-1", refTo(p), csr, map[string]string{cmapi.CertificateNameKey: name})
			setApproval(t, cr, true)
			issued(t, waitRequest(t, cr, 30*time.Second), srv.CA)

			var got *ndes.Enrollment
			for _, e := range srv.Enrollments() {
				if e.Subject == "CN="+name {
					got = &e
				}
			}
			if got == nil {
				t.Fatalf("NDES recorded no enrollment for CN=%s: %+v", name, srv.Enrollments())
			}
			if got.KeyUsage != tc.ask || got.Template != tc.template || got.RequestedTemplate != "WebServer-K8s" {
				t.Errorf("NDES saw key usage %v, chose %q, request named %q; want %v, %q, WebServer-K8s", got.KeyUsage, got.Template, got.RequestedTemplate, tc.ask, tc.template)
			}
		})
	}
}
