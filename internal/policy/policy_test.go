package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
)

var rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)

func csrOf(t *testing.T, tmpl scep.CSRTemplate, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	der, err := scep.NewCSR(tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestVariablesFor(t *testing.T) {
	cr := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Annotations: map[string]string{
		cmapi.CertificateNameKey: "web", EmailAnnotation: "ops@shop.example"}}, Spec: cmapi.CertificateRequestSpec{Username: "system:serviceaccount:cert-manager:cert-manager"}}
	got := VariablesFor(cr, "cluster.local")
	want := Variables{"namespace": "shop", "certificatename": "web", "requestname": "web-1", "username": "system:serviceaccount:cert-manager:cert-manager",
		"email": "ops@shop.example", "domainname": "cluster.local", "devicename": "web.shop"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(Known) {
		t.Errorf("VariablesFor sets %d variables, Known lists %d", len(got), len(Known))
	}
}

func TestCheck(t *testing.T) {
	vars := Variables{"namespace": "shop", "certificatename": "web", "domainname": "cluster.local", "email": ""}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	spec := v1.SCEPProfileSpec{
		KeySize: 2048,
		Subject: "CN=%certificatename%.%namespace%,O=Corp",
		SubjectAltNames: []v1.SubjectAltName{
			{Type: v1.SANTypeDNSName, Value: "%certificatename%.%namespace%.svc.%domainname%"},
			{Type: v1.SANTypeDNSName, Value: "*.apps.corp.example"},
			{Type: v1.SANTypeURI, Value: "spiffe://%domainname%/ns/%namespace%/sa/*"},
			{Type: v1.SANTypeUPN, Value: "%certificatename%@corp.example"},
			{Type: v1.SANTypeRFC822Name, Value: "*@corp.example"},
		},
		KeyUsage: []v1.KeyUsage{v1.KeyUsageDigitalSignature, v1.KeyUsageKeyEncipherment},
	}
	good := webShopTemplate()
	if err := Check(&spec, csrOf(t, good, rsaKey), vars); err != nil {
		t.Fatalf("a fitting request was refused: %v", err)
	}

	tests := []struct {
		name  string
		spec  func(*v1.SCEPProfileSpec)
		tmpl  func(*scep.CSRTemplate)
		key   crypto.Signer
		field string
		text  string
	}{
		{"wrong key size", func(s *v1.SCEPProfileSpec) { s.KeySize = 3072 }, nil, nil, "spec.keySize", "RSA 2048"},
		{"ECDSA not allowed", nil, nil, ecKey, "spec.allowECDSAKeys", "P-256"},
		{"subject differs", nil, func(c *scep.CSRTemplate) { c.Subject.CommonName = "other.shop" }, nil, "spec.subject", "other.shop"},
		{"extra subject attribute", nil, func(c *scep.CSRTemplate) { c.Subject.OrganizationalUnit = []string{"X"} }, nil, "spec.subject", "OU=X"},
		{"variable without a value", func(s *v1.SCEPProfileSpec) { s.Subject = "CN=%email%" }, nil, nil, "spec.subject", "%email%"},
		{"DNS name not allowed", nil, func(c *scep.CSRTemplate) { c.DNSNames = append(c.DNSNames, "evil.example") }, nil, "spec.subjectAltNames", `DNSName "evil.example"`},
		{"wildcard does not cross into another domain", nil, func(c *scep.CSRTemplate) { c.DNSNames = []string{"x.apps.corp.example.evil"} }, nil, "spec.subjectAltNames", "x.apps.corp.example.evil"},
		{"URI in another namespace", nil, func(c *scep.CSRTemplate) {
			u, _ := url.Parse("spiffe://cluster.local/ns/bank/sa/x")
			c.URIs = []*url.URL{u}
		}, nil, "spec.subjectAltNames", "ns/bank"},
		{"UPN of someone else", nil, func(c *scep.CSRTemplate) { c.UPNs = []string{"administrator@corp.example"} }, nil, "spec.subjectAltNames", "UPN"},
		{"email elsewhere", nil, func(c *scep.CSRTemplate) { c.EmailAddresses = []string{"a@gmail.com"} }, nil, "spec.subjectAltNames", "RFC822Name"},
		{"IP address", nil, func(c *scep.CSRTemplate) { c.IPAddresses = []net.IP{net.IPv4(10, 0, 0, 1)} }, nil, "spec.subjectAltNames", "IP"},
		{"key usage not allowed", func(s *v1.SCEPProfileSpec) { s.KeyUsage = []v1.KeyUsage{v1.KeyUsageDigitalSignature} }, nil, nil, "spec.keyUsage", "KeyEncipherment"},
		{"cert signing asked", nil, func(c *scep.CSRTemplate) { c.KeyUsage |= x509.KeyUsageCertSign }, nil, "spec.keyUsage", "CertSign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec
			s.SubjectAltNames = append([]v1.SubjectAltName(nil), spec.SubjectAltNames...)
			if tt.spec != nil {
				tt.spec(&s)
			}
			tmpl := good
			if tt.tmpl != nil {
				tt.tmpl(&tmpl)
			}
			key := crypto.Signer(rsaKey)
			if tt.key != nil {
				key = tt.key
			}
			err := Check(&s, csrOf(t, tmpl, key), vars)
			v, ok := err.(*Violation)
			if !ok || v.Field != tt.field || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want a violation of %s mentioning %q", err, tt.field, tt.text)
			}
		})
	}

	t.Run("NDES refuses escaped characters in the subject", func(t *testing.T) {
		ndes := v1.SCEPProfileSpec{URL: "http://ndes.corp/certsrv/mscep/mscep.dll"}
		for _, cn := range []string{"a+b", "a;b", "a,b", "a=b"} {
			err := Check(&ndes, csrOf(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: cn}}, rsaKey), vars)
			if v, ok := err.(*Violation); !ok || v.Field != "spec.subject" || !strings.Contains(err.Error(), "NDES") {
				t.Errorf("CN=%s: err = %v", cn, err)
			}
		}
		if err := Check(&ndes, csrOf(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "web.shop"}}, rsaKey), vars); err != nil {
			t.Errorf("a plain subject was refused: %v", err)
		}
		other := v1.SCEPProfileSpec{URL: "http://mdm.example/scep"}
		if err := Check(&other, csrOf(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "a+b"}}, rsaKey), vars); err != nil {
			t.Errorf("a non-NDES server was held to NDES's rule: %v", err)
		}
	})
	t.Run("empty profile allows anything RSA 2048", func(t *testing.T) {
		if err := Check(&v1.SCEPProfileSpec{}, csrOf(t, good, rsaKey), vars); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ECDSA allowed when the profile says so", func(t *testing.T) {
		if err := Check(&v1.SCEPProfileSpec{AllowECDSAKeys: true}, csrOf(t, good, ecKey), vars); err != nil {
			t.Fatal(err)
		}
	})
}

// A template value that is not valid UTF-8 (found by FuzzCheck, corpus
// testdata/fuzz/FuzzCheck/5c5b61bffb09362c) is refused, not a panic in
// regexp.MustCompile.
func TestInvalidUTF8Template(t *testing.T) {
	csr := csrOf(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "\u00e9"}, DNSNames: []string{"web.shop"}}, rsaKey)
	spec := v1.SCEPProfileSpec{SubjectAltNames: []v1.SubjectAltName{{Type: v1.SANTypeDNSName, Value: "\xe9"}}}
	err := Check(&spec, csr, nil)
	if v, ok := err.(*Violation); !ok || v.Field != "spec.subjectAltNames[0]" {
		t.Fatalf("err = %v, want a violation of spec.subjectAltNames[0]", err)
	}
	if namesMatch(pkix.Name{CommonName: "\xe9"}, csr.Subject) {
		t.Fatal("a subject value that is not UTF-8 matched")
	}
}

// webShopTemplate is a request that fits TestCheck's profile: the start of
// its cases and of FuzzCheck's seeds.
func webShopTemplate() scep.CSRTemplate {
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/web")
	return scep.CSRTemplate{
		Subject:        pkix.Name{CommonName: "web.shop", Organization: []string{"Corp"}},
		DNSNames:       []string{"web.shop.svc.cluster.local", "Shop.Apps.Corp.Example"},
		URIs:           []*url.URL{spiffe},
		UPNs:           []string{"web@corp.example"},
		EmailAddresses: []string{"web@corp.example"},
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
}
