package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"

	v1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// FuzzExpand: any template expands or is refused with an error naming the
// variables that have no value; never a panic. An expansion leaves no
// %variable% behind (when no value itself holds a '%'), and a template
// without '%' comes back unchanged.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{
		"CN=%certificatename%.%namespace%,O=Corp",
		"%certificatename%.%namespace%.svc.%domainname%",
		"spiffe://%domainname%/ns/%namespace%/sa/*",
		"%DeviceName%@corp.example",
		"CN=%email%",
		"100%,O=x%%y",
		"%namespace%%namespace%%",
		"no variables at all",
	} {
		f.Add(s, "shop", "web")
	}
	f.Add("%namespace%-%certificatename%", "", "web")
	f.Add("%certificatename%", "shop", "%namespace%")
	f.Fuzz(func(t *testing.T, tmpl, namespace, certName string) {
		vars := Variables{
			"namespace":       namespace,
			"certificatename": certName,
			"requestname":     certName + "-1",
			"username":        "system:serviceaccount:cert-manager:cert-manager",
			"domainname":      "cluster.local",
			"devicename":      certName + "." + namespace,
			// email has no value.
		}
		out, err := Expand(tmpl, vars)
		if err != nil {
			if out != "" {
				t.Fatalf("Expand(%q) = %q with error %v", tmpl, out, err)
			}
			if !strings.HasSuffix(err.Error(), " has no value for this request") || !strings.HasPrefix(err.Error(), "%") {
				t.Fatalf("Expand(%q): unclear error %q", tmpl, err)
			}
			return
		}
		if !strings.Contains(tmpl, "%") && out != tmpl {
			t.Fatalf("Expand(%q) = %q, want the template unchanged", tmpl, out)
		}
		if strings.Contains(namespace+certName, "%") {
			return
		}
		if m := variablePattern.FindString(out); m != "" {
			t.Fatalf("Expand(%q) = %q, which still holds %s", tmpl, out, m)
		}
	})
}

// FuzzCheck: any CSR that crypto/x509 parses, held against any subject and
// subjectAltName templates, fits or is refused with a *Violation naming a
// profile field; never a panic.
func FuzzCheck(f *testing.F) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	csr := func(tmpl scep.CSRTemplate, key crypto.Signer) []byte {
		der, err := scep.NewCSR(tmpl, key)
		if err != nil {
			f.Fatal(err)
		}
		return der
	}
	tmpl := webShopTemplate()
	// One RSA request; the rest use P-256 (flag 0x40 allows it), whose
	// requests are half the size, so that mutations and minimization spend
	// less time in key and signature bytes that Check never reads.
	subject := "CN=%certificatename%.%namespace%,O=Corp"
	f.Add(csr(tmpl, rsaKey), subject, "%certificatename%.%namespace%.svc.%domainname%", byte(0x0c))
	good := csr(tmpl, ecKey)
	f.Add(good, subject, "*.apps.corp.example", byte(0x5c))
	f.Add(good, "", "spiffe://%domainname%/ns/%namespace%/sa/*", byte(0x42))
	f.Add(good, "CN=%email%", "%certificatename%@corp.example", byte(0x43))
	f.Add(csr(scep.CSRTemplate{Subject: pkix.Name{CommonName: "a+b"}, ChallengePassword: "0A1B2C3D"}, ecKey), "CN=*", "*", byte(0x60))
	f.Add(csr(scep.CSRTemplate{Subject: pkix.Name{CommonName: "dev", ExtraNames: []pkix.AttributeTypeAndValue{{Type: []int{0, 9, 2342, 19200300, 100, 1, 25}, Value: "corp"}}}, DNSNames: []string{"dev.corp"}}, ecKey), "/DC=corp/CN=dev", "*.corp", byte(0x44))
	f.Fuzz(func(t *testing.T, der []byte, subject, san string, flags byte) {
		req, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return
		}
		spec := v1.SCEPProfileSpec{
			URL:            "http://scep.example/scep",
			Subject:        subject,
			AllowECDSAKeys: flags&0x40 != 0,
		}
		if flags&0x20 != 0 {
			spec.URL = "http://ndes.corp/certsrv/mscep/mscep.dll"
		}
		if san != "" {
			types := []v1.SANType{v1.SANTypeDNSName, v1.SANTypeRFC822Name, v1.SANTypeURI, v1.SANTypeUPN}
			spec.SubjectAltNames = []v1.SubjectAltName{{Type: types[flags&3], Value: san}}
		}
		if flags&0x04 != 0 {
			spec.KeyUsage = append(spec.KeyUsage, v1.KeyUsageDigitalSignature)
		}
		if flags&0x08 != 0 {
			spec.KeyUsage = append(spec.KeyUsage, v1.KeyUsageKeyEncipherment)
		}
		if flags&0x10 != 0 {
			spec.KeySize = 3072
		}
		vars := Variables{"namespace": "shop", "certificatename": "web", "requestname": "web-1", "domainname": "cluster.local", "devicename": "web.shop"}
		err = Check(&spec, req, vars)
		if err == nil {
			return
		}
		var v *Violation
		if !errors.As(err, &v) || !strings.HasPrefix(v.Field, "spec.") || v.Reason == "" {
			t.Fatalf("Check returned %T %v, want a *Violation naming a spec field", err, err)
		}
	})
}
