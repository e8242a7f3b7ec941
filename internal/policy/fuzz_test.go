package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	v1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// FuzzExpand: any template binds to a request's values or is refused with
// an error naming the variables that have no value; never a panic. A bound
// template matches exactly what a regular expression built from it with
// each value quoted matches (values are literal, "*" in the template's own
// text is any run), and a template whose text holds no "*" matches its
// expansion.
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
		"*a*b*",
	} {
		f.Add(s, "shop", "web", "web.shop")
	}
	f.Add("%namespace%-%certificatename%", "", "web", "-web")
	f.Add("%certificatename%", "shop", "%namespace%", "%namespace%")
	f.Add("*.%namespace%", "*", "web", "x.*")
	f.Add("*.%namespace%", "*", "web", "x.y")
	f.Fuzz(func(t *testing.T, tmpl, namespace, certName, candidate string) {
		vars := Variables{
			"namespace":       namespace,
			"certificatename": certName,
			"requestname":     certName + "-1",
			"username":        "system:serviceaccount:cert-manager:cert-manager",
			"domainname":      "cluster.local",
			"devicename":      certName + "." + namespace,
			// email has no value.
		}
		tp := parseTemplate(tmpl)
		p, err := tp.bind(vars, false)
		if err != nil {
			msg := err.Error()
			clear := strings.HasPrefix(msg, "%") && strings.Contains(msg, " no value for this request") || strings.HasPrefix(msg, "the value of %")
			if !clear {
				t.Fatalf("bind(%q): unclear error %q", tmpl, err)
			}
			return
		}
		got := p.match(candidate)

		// The reference: a regular expression over the same parts.
		var expansion strings.Builder
		re := "^(?s)"
		for _, part := range tp.parts {
			text := part.literal
			if part.literal == "" {
				text = vars[part.variable]
				re += regexp.QuoteMeta(text)
			} else {
				re += strings.ReplaceAll(regexp.QuoteMeta(text), `\*`, `.*`)
			}
			expansion.WriteString(text)
		}
		if utf8.ValidString(tmpl+namespace+certName+candidate) && len(re) < 10000 {
			ref, err := regexp.Compile(re + "$")
			if err == nil && ref.MatchString(candidate) != got {
				t.Fatalf("template %q with %v: match(%q) = %v, the reference %s says %v", tmpl, vars, candidate, got, re, !got)
			}
		}
		if !strings.Contains(tmpl, "*") && !p.match(expansion.String()) {
			t.Fatalf("template %q does not match its expansion %q", tmpl, expansion.String())
		}
	})
}

// FuzzCheck: any CSR that crypto/x509 parses, held against any subject and
// subjectAltName templates, fits or is refused with a *Violation naming a
// field; never a panic. A request that fits has only the names, extensions
// and attributes a profile can allow.
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
	f.Add(good, "", "", byte(0xc0))
	f.Add(csr(scep.CSRTemplate{Subject: pkix.Name{CommonName: "a+b"}, ChallengePassword: "0A1B2C3D"}, ecKey), "CN=*", "*", byte(0x60))
	f.Add(csr(scep.CSRTemplate{Subject: pkix.Name{CommonName: "dev", ExtraNames: []pkix.AttributeTypeAndValue{{Type: []int{0, 9, 2342, 19200300, 100, 1, 25}, Value: "corp"}}}, DNSNames: []string{"dev.corp"}}, ecKey), "/DC=corp/CN=dev", "*.corp", byte(0x44))
	eku := pkix.Extension{Id: oidExtExtendedKeyUsage, Value: mustMarshal(f, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}})}
	f.Add(csr(scep.CSRTemplate{Subject: pkix.Name{CommonName: "web.shop", Organization: []string{"Corp"}}, Extensions: []pkix.Extension{eku}}, ecKey), subject, "", byte(0x40))
	for _, raw := range []*x509.CertificateRequest{
		rawCSR(f, pkix.Name{CommonName: "web.shop"}.ToRDNSequence(), extensionRequest(f, sanExtension(f, otherNameSAN(f, oidUPN, "web@corp.example")))),
		rawCSR(f, pkix.Name{CommonName: "web.shop"}.ToRDNSequence(), rawAttribute{Type: oidMSNameValuePair, Values: []asn1.RawValue{rawValue(f, struct{ N, V string }{"SAN", "upn=a@b"})}}),
	} {
		f.Add(raw.Raw, "CN=*", "*@corp.example", byte(0x83))
	}
	f.Fuzz(func(t *testing.T, der []byte, subject, san string, flags byte) {
		req, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return
		}
		spec := v1.SCEPProfileSpec{
			URL:               "http://scep.example/scep",
			Subject:           subject,
			AllowAnySubject:   subject == "",
			AllowECDSAKeys:    flags&0x40 != 0,
			ExtendedKeyUsages: []string{"ServerAuth"},
		}
		if flags&0x20 != 0 {
			spec.URL = "http://ndes.corp/certsrv/mscep/mscep.dll"
		}
		if san != "" {
			types := []v1.SANType{v1.SANTypeDNSName, v1.SANTypeRFC822Name, v1.SANTypeURI, v1.SANTypeUPN}
			spec.SubjectAltNames = []v1.SubjectAltName{{Type: types[flags&3], Value: san}}
		} else {
			spec.AllowAnySubjectAltNames = flags&0x80 != 0
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
		if flags&0x80 != 0 {
			spec.Variables = &v1.VariableConstraints{Email: []string{"%namespace%-*@corp.example"}}
		}
		vars := Variables{"namespace": "shop", "certificatename": "web", "requestname": "web-1", "domainname": "cluster.local", "devicename": "web.shop", "email": "shop-a*@corp.example"}
		err = Check(&spec, Request{CSR: req, Vars: vars})
		if err == nil {
			fits(t, req)
			return
		}
		var v *Violation
		if !errors.As(err, &v) || !strings.HasPrefix(v.Field, "spec") || v.Reason == "" {
			t.Fatalf("Check returned %T %v, want a *Violation naming a field", err, err)
		}
	})
}

// fits fails t unless a request Check let through has only what a profile
// can allow: no attribute but extensionRequest, no CA, no IP address, and
// only the extensions FuzzCheck's profile allows.
func fits(t *testing.T, req *x509.CertificateRequest) {
	t.Helper()
	for _, a := range req.Attributes { //nolint:staticcheck // every attribute is what FuzzCheck judges, not only extensionRequest
		if !a.Type.Equal(oidExtensionRequest) {
			t.Fatalf("a request with the attribute %s fits", a.Type)
		}
	}
	if len(req.IPAddresses) > 0 {
		t.Fatalf("a request with IP addresses %v fits", req.IPAddresses)
	}
	for _, e := range req.Extensions {
		switch {
		case e.Id.Equal(oidExtSubjectAltName), e.Id.Equal(oidExtKeyUsage), e.Id.Equal(oidExtExtendedKeyUsage), e.Id.Equal(oidExtSubjectKeyIdentifier):
		case e.Id.Equal(oidExtBasicConstraints):
			var bc basicConstraints
			if _, err := asn1.Unmarshal(e.Value, &bc); err != nil || bc.IsCA {
				t.Fatalf("a request with basicConstraints %x fits", e.Value)
			}
		default:
			t.Fatalf("a request with the extension %s fits", e.Id)
		}
	}
}
