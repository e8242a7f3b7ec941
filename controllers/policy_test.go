package controllers_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/micromdm"
)

// TestPolicyViolations: a request that does not fit the profile in one field
// (subject, alternative names, key usage, key) fails with a message naming
// that field, and nothing reaches the SCEP server; a request that fits is
// issued by the same profile.
func TestPolicyViolations(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := micromdm.Start(t, micromdm.Options{})
	startManager(t)
	c := apiServer(t).Client

	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "strict"},
		Spec: scepv1alpha1.SCEPProfileSpec{
			URL:           srv.URL,
			CAFingerprint: scep.FingerprintOf(srv.CA, crypto.SHA256).Hex(),
			Subject:       "CN=%certificatename%.%namespace%",
			SubjectAltNames: []scepv1alpha1.SubjectAltName{
				{Type: scepv1alpha1.SANTypeDNSName, Value: "%certificatename%.%namespace%.svc.%domainname%"},
				{Type: scepv1alpha1.SANTypeURI, Value: "spiffe://%domainname%/ns/%namespace%/*"},
				{Type: scepv1alpha1.SANTypeUPN, Value: "%certificatename%@corp.example"},
				{Type: scepv1alpha1.SANTypeRFC822Name, Value: "*@corp.example"},
			},
			KeyUsage: []scepv1alpha1.KeyUsage{scepv1alpha1.KeyUsageDigitalSignature},
			KeySize:  2048,
		},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	// Its UPN template has no %namespace%: any namespace could claim the same
	// account, which the PolicyWarning condition says (policy.Warnings).
	if w := meta.FindStatusCondition(p.Status.Conditions, controllers.ConditionPolicyWarning); w == nil || w.Status != metav1.ConditionTrue ||
		!strings.Contains(w.Message, `spec.subjectAltNames[2] (UPN "%certificatename%@corp.example")`) {
		t.Errorf("PolicyWarning = %+v, want True naming the UPN template", w)
	}

	// fitting is a CSR template that fits the profile for Certificate name.
	fitting := func(name string) scep.CSRTemplate {
		return scep.CSRTemplate{
			Subject:        pkix.Name{CommonName: name + "." + ns},
			DNSNames:       []string{name + "." + ns + ".svc.cluster.local"},
			URIs:           []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/" + ns + "/sa/" + name}},
			UPNs:           []string{name + "@corp.example"},
			EmailAddresses: []string{"alice@corp.example"},
			KeyUsage:       x509.KeyUsageDigitalSignature,
		}
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		change func(*scep.CSRTemplate)
		key    crypto.Signer
		field  string
		detail string // a part of the message that says what is wrong
	}{
		{name: "wrong-cn", change: func(tm *scep.CSRTemplate) { tm.Subject.CommonName = "someone-else." + ns }, field: "spec.subject", detail: "someone-else." + ns},
		{name: "extra-o", change: func(tm *scep.CSRTemplate) { tm.Subject.Organization = []string{"Evil Corp"} }, field: "spec.subject", detail: "Evil Corp"},
		{name: "dns", change: func(tm *scep.CSRTemplate) { tm.DNSNames = append(tm.DNSNames, "www.evil.example") }, field: "spec.subjectAltNames", detail: "www.evil.example"},
		{name: "uri", change: func(tm *scep.CSRTemplate) {
			tm.URIs = []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/kube-system/sa/uri"}}
		}, field: "spec.subjectAltNames", detail: "spiffe://cluster.local/ns/kube-system/sa/uri"},
		{name: "upn", change: func(tm *scep.CSRTemplate) { tm.UPNs = []string{"administrator@corp.example"} }, field: "spec.subjectAltNames", detail: "administrator@corp.example"},
		{name: "email", change: func(tm *scep.CSRTemplate) { tm.EmailAddresses = []string{"alice@evil.example"} }, field: "spec.subjectAltNames", detail: "alice@evil.example"},
		{name: "ip", change: func(tm *scep.CSRTemplate) { tm.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")} }, field: "spec.subjectAltNames", detail: "10.0.0.1"},
		{name: "key-usage", change: func(tm *scep.CSRTemplate) {
			tm.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		}, field: "spec.keyUsage", detail: "KeyEncipherment"},
		{name: "rsa-3072", key: rsaKey(3072, 0), field: "spec.keySize", detail: "RSA 3072"},
		{name: "ecdsa", key: ecKey, field: "spec.allowECDSAKeys", detail: "ECDSA"},
	}

	// All violating requests are made and approved at once, then awaited.
	crs := make([]*cmapi.CertificateRequest, len(cases))
	for i, tc := range cases {
		tmpl := fitting(tc.name)
		if tc.change != nil {
			tc.change(&tmpl)
		}
		key := tc.key
		if key == nil {
			key = rsaKey(2048, 0)
		}
		crs[i] = request(t, ns, tc.name+"-1", refTo(p), csrPEM(t, tmpl, key), map[string]string{cmapi.CertificateNameKey: tc.name})
		setApproval(t, crs[i], true)
	}
	for i, tc := range cases {
		got := waitRequest(t, crs[i], 30*time.Second)
		ready := crCondition(got, cmapi.CertificateRequestConditionReady)
		if ready.Reason != cmapi.CertificateRequestReasonFailed {
			t.Errorf("%s: Ready = %s %s: %s, want Failed", tc.name, ready.Status, ready.Reason, ready.Message)
			continue
		}
		want := "the request does not fit the SCEP profile: " + tc.field + ": "
		if !strings.Contains(ready.Message, want) || !strings.Contains(ready.Message, tc.detail) {
			t.Errorf("%s: message = %q, want it to contain %q and %q", tc.name, ready.Message, want, tc.detail)
		}
		if st := got.Annotations[signer.AnnotationState]; st != "" {
			t.Errorf("%s: SCEP transaction state %q was written", tc.name, st)
		}
	}
	// Every request above is Failed, so none of them can still be sent.
	if n := srv.Requests("PKIOperation"); n != 0 {
		t.Errorf("the server saw %d PKIOperation requests for requests that do not fit, want 0", n)
	}

	// Each violation is also an Event on its request.
	eventually(t, 15*time.Second, "a PolicyViolation Event on each request", func() (bool, string) {
		var evs eventsv1.EventList
		if err := c.List(t.Context(), &evs, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		seen := map[string]bool{}
		for _, e := range evs.Items {
			if e.Reason == signer.EventPolicyViolation && e.Type == "Warning" && strings.Contains(e.Note, "nothing was sent") {
				seen[e.Regarding.Name] = true
			}
		}
		for _, cr := range crs {
			if !seen[cr.Name] {
				return false, "no PolicyViolation Event for " + cr.Name
			}
		}
		return true, ""
	})

	// The same profile issues a request that fits.
	ok := request(t, ns, "web-1", refTo(p), csrPEM(t, fitting("web"), rsaKey(2048, 0)), map[string]string{cmapi.CertificateNameKey: "web"})
	setApproval(t, ok, true)
	leaf := issued(t, waitRequest(t, ok, 30*time.Second), srv.CA)
	if leaf.Subject.CommonName != "web."+ns {
		t.Errorf("issued subject = %v", leaf.Subject)
	}
	if n := srv.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("the server saw %d PKCSReq, want 1 (the fitting request only)", n)
	}
}
