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
	"net"
	"net/url"
	"strings"
	"testing"

	v1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// testSpec is the profile TestCheck's cases change: a subject, SAN
// templates of each type, both key usages, ServerAuth.
func testSpec() v1.SCEPProfileSpec {
	return v1.SCEPProfileSpec{
		KeySize: 2048,
		Subject: "CN=%certificatename%.%namespace%,O=Corp",
		SubjectAltNames: []v1.SubjectAltName{
			{Type: v1.SANTypeDNSName, Value: "%certificatename%.%namespace%.svc.%domainname%"},
			{Type: v1.SANTypeDNSName, Value: "*.apps.corp.example"},
			{Type: v1.SANTypeURI, Value: "spiffe://%domainname%/ns/%namespace%/sa/*"},
			{Type: v1.SANTypeUPN, Value: "%certificatename%.%namespace%@corp.example"},
			{Type: v1.SANTypeRFC822Name, Value: "*@%namespace%.corp.example"},
		},
		KeyUsage:          []v1.KeyUsage{v1.KeyUsageDigitalSignature, v1.KeyUsageKeyEncipherment},
		ExtendedKeyUsages: []string{"ServerAuth"},
	}
}

// testVars are those of a request made by Certificate web in namespace
// shop.
func testVars() Variables {
	return Variables{"namespace": "shop", "certificatename": "web", "devicename": "web.shop", "requestname": "web-1", "domainname": "cluster.local"}
}

var (
	oidServerAuth = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidClientAuth = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidAnyEKU     = asn1.ObjectIdentifier{2, 5, 29, 37, 0}
	oidNTDSSID    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 25, 2}
	oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}
)

func TestCheck(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cn := func(name string) func(*scep.CSRTemplate) {
		return func(c *scep.CSRTemplate) { c.Subject = pkix.Name{CommonName: name, Organization: []string{"Corp"}} }
	}
	subjectFromEmail := func(s *v1.SCEPProfileSpec) { s.Subject = "CN=%email%,O=Corp" }
	email := func(e string) func(Variables) { return func(v Variables) { v["email"] = e } }
	exts := func(e ...func(testing.TB) pkix.Extension) func(testing.TB, *scep.CSRTemplate) {
		return func(t testing.TB, c *scep.CSRTemplate) {
			for _, f := range e {
				c.Extensions = append(c.Extensions, f(t))
			}
		}
	}
	sans := func(names ...func(testing.TB) asn1.RawValue) func(testing.TB) pkix.Extension {
		return func(t testing.TB) pkix.Extension {
			var raw []asn1.RawValue
			for _, n := range names {
				raw = append(raw, n(t))
			}
			return sanExtension(t, raw...)
		}
	}
	dnsName := func(n string) func(testing.TB) asn1.RawValue {
		return func(testing.TB) asn1.RawValue {
			return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(n)}
		}
	}
	upn := func(oid asn1.ObjectIdentifier, n string) func(testing.TB) asn1.RawValue {
		return func(t testing.TB) asn1.RawValue { return otherNameSAN(t, oid, n) }
	}
	tagged := func(tag int, compound bool, content []byte) func(testing.TB) asn1.RawValue {
		return func(testing.TB) asn1.RawValue {
			return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: compound, Bytes: content}
		}
	}
	eku := func(oids ...asn1.ObjectIdentifier) func(testing.TB) pkix.Extension {
		return func(t testing.TB) pkix.Extension { return ekuExtension(t, oids...) }
	}
	basic := func(ca bool) func(testing.TB) pkix.Extension {
		return func(t testing.TB) pkix.Extension {
			return pkix.Extension{Id: oidExtBasicConstraints, Critical: true, Value: mustMarshal(t, basicConstraints{IsCA: ca, MaxPathLen: -1})}
		}
	}
	ext := func(oid asn1.ObjectIdentifier, value any) func(testing.TB) pkix.Extension {
		return func(t testing.TB) pkix.Extension { return pkix.Extension{Id: oid, Value: mustMarshal(t, value)} }
	}
	// A directoryName is [4] EXPLICIT Name.
	dirName := mustMarshal(t, pkix.Name{CommonName: "Administrator"}.ToRDNSequence())
	regID := mustMarshal(t, asn1.ObjectIdentifier{1, 2, 3, 4})
	good := webShopTemplate()
	goodSubject := pkix.Name{CommonName: "web.shop", Organization: []string{"Corp"}}.ToRDNSequence()

	tests := []struct {
		name  string
		spec  func(*v1.SCEPProfileSpec)
		tmpl  func(*scep.CSRTemplate)
		ext   func(testing.TB, *scep.CSRTemplate)
		csr   func(testing.TB) *x509.CertificateRequest // instead of the template
		vars  func(Variables)
		isCA  bool
		key   crypto.Signer
		field string // "" for a request that fits
		text  string
	}{
		{name: "the request that fits"},

		// Key.
		{name: "wrong key size", spec: func(s *v1.SCEPProfileSpec) { s.KeySize = 3072 }, field: "spec.keySize", text: "RSA 2048"},
		{name: "ECDSA not allowed", key: ecKey, field: "spec.allowECDSAKeys", text: "P-256"},
		{name: "ECDSA allowed", spec: func(s *v1.SCEPProfileSpec) { s.AllowECDSAKeys = true }, key: ecKey},

		// Subject.
		{name: "subject differs", tmpl: cn("other.shop"), field: "spec.subject", text: "other.shop"},
		{name: "extra subject attribute", tmpl: func(c *scep.CSRTemplate) { c.Subject.OrganizationalUnit = []string{"X"} }, field: "spec.subject", text: "no OU attribute"},
		{name: "extra attribute crypto/x509 has no field for", tmpl: func(c *scep.CSRTemplate) {
			c.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "administrator"}}
		}, field: "spec.subject", text: "no UID attribute"},
		{name: "the same attribute in the template fits", spec: func(s *v1.SCEPProfileSpec) { s.Subject += ",UID=administrator" }, tmpl: func(c *scep.CSRTemplate) {
			c.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "administrator"}}
		}},
		{name: "globs pair up as a set", spec: func(s *v1.SCEPProfileSpec) { s.Subject = "CN=web.shop,OU=*,OU=a" }, tmpl: func(c *scep.CSRTemplate) {
			c.Subject = pkix.Name{CommonName: "web.shop", OrganizationalUnit: []string{"a", "b"}}
		}},
		{name: "control character in the subject", spec: func(s *v1.SCEPProfileSpec) { s.Subject = "CN=*,O=Corp" }, tmpl: cn("web.shop\x00.evil"), field: "spec.subject", text: "control character"},
		{name: "subject value that is not text", csr: func(t testing.TB) *x509.CertificateRequest {
			return rawCSR(t, pkix.RDNSequence{{{Type: oidCommonName, Value: 42}}}, extensionRequest(t))
		}, spec: func(s *v1.SCEPProfileSpec) { s.SubjectAltNames = nil }, field: "spec.subject", text: "not text"},
		{name: "no subject template and no allowAnySubject", spec: func(s *v1.SCEPProfileSpec) { s.Subject = "" }, field: "spec.subject", text: "set subject or allowAnySubject"},
		{name: "allowAnySubject", spec: func(s *v1.SCEPProfileSpec) { s.Subject, s.AllowAnySubject = "", true }, tmpl: cn("anything")},
		{name: "no owner: %certificatename% has no value", vars: func(v Variables) { delete(v, "certificatename"); delete(v, "devicename") }, field: "spec.subject", text: "made by a cert-manager Certificate"},

		// Variables are matched literally (finding 2).
		{name: "DN injection: ',' in a value adds no attribute", spec: subjectFromEmail, vars: email("x,O=Admins"), tmpl: func(c *scep.CSRTemplate) {
			c.Subject = pkix.Name{CommonName: "x", Organization: []string{"Admins", "Corp"}}
		}, field: "spec.subject", text: `O="Admins" matches none of the template's O values "Corp"`},
		{name: "DN injection control: ',' in a value is its own text", spec: subjectFromEmail, vars: email("x,O=Admins"), tmpl: cn("x,O=Admins")},
		{name: "DN injection: '+' and '=' in a value", spec: subjectFromEmail, vars: email("x+OU=Admins"), tmpl: func(c *scep.CSRTemplate) {
			c.Subject = pkix.Name{CommonName: "x", OrganizationalUnit: []string{"Admins"}, Organization: []string{"Corp"}}
		}, field: "spec.subject", text: "spec.subject"},
		{name: "DN injection control: '+' and '=' in a value", spec: subjectFromEmail, vars: email("x+OU=Admins"), tmpl: cn("x+OU=Admins")},
		{name: "DN injection: an escape in a value is not unescaped", spec: subjectFromEmail, vars: email(`x\,O=Admins`), tmpl: cn("x,O=Admins"), field: "spec.subject", text: "spec.subject"},
		{name: "DN injection control: an escaped value matches itself", spec: subjectFromEmail, vars: email(`x\,O=Admins`), tmpl: cn(`x\,O=Admins`)},
		{name: "glob injection: '*' in a value matches no other text", spec: subjectFromEmail, vars: email("*"), tmpl: cn("administrator"), field: "spec.subject", text: "administrator"},
		{name: "glob injection control: '*' in a value matches a '*'", spec: subjectFromEmail, vars: email("*"), tmpl: cn("*")},
		{name: "glob injection in an alternative name", spec: func(s *v1.SCEPProfileSpec) {
			s.SubjectAltNames = []v1.SubjectAltName{{Type: v1.SANTypeRFC822Name, Value: "%email%"}}
		}, vars: email("*@corp.example"), tmpl: func(c *scep.CSRTemplate) {
			*c = scep.CSRTemplate{Subject: c.Subject, EmailAddresses: []string{"ceo@corp.example"}}
		}, field: "spec.subjectAltNames", text: "ceo@corp.example"},
		{name: "the template's own glob still works", spec: func(s *v1.SCEPProfileSpec) { s.Subject = "CN=*.%namespace%,O=Corp" }, tmpl: cn("any-thing.shop")},
		{name: "email outside spec.variables.email", spec: func(s *v1.SCEPProfileSpec) {
			s.Variables = &v1.VariableConstraints{Email: []string{"%namespace%-*@corp.example"}}
			s.SubjectAltNames = append(s.SubjectAltNames, v1.SubjectAltName{Type: v1.SANTypeRFC822Name, Value: "%email%"})
		}, vars: email("ceo@corp.example"), field: "spec.variables.email", text: `"ceo@corp.example"`},
		{name: "email inside spec.variables.email", spec: func(s *v1.SCEPProfileSpec) {
			s.Variables = &v1.VariableConstraints{Email: []string{"%namespace%-*@corp.example"}}
			s.SubjectAltNames = []v1.SubjectAltName{{Type: v1.SANTypeRFC822Name, Value: "%email%"}}
		}, vars: email("Shop-CI@corp.example"), tmpl: func(c *scep.CSRTemplate) {
			*c = scep.CSRTemplate{Subject: c.Subject, EmailAddresses: []string{"Shop-CI@corp.example"}}
		}},

		// Alternative names.
		{name: "DNS name not allowed", tmpl: func(c *scep.CSRTemplate) { c.DNSNames = append(c.DNSNames, "evil.example") }, field: "spec.subjectAltNames", text: `DNSName "evil.example"`},
		{name: "wildcard does not cross into another domain", tmpl: func(c *scep.CSRTemplate) { c.DNSNames = []string{"x.apps.corp.example.evil"} }, field: "spec.subjectAltNames", text: "x.apps.corp.example.evil"},
		{name: "URI in another namespace", tmpl: func(c *scep.CSRTemplate) {
			u, _ := url.Parse("spiffe://cluster.local/ns/bank/sa/x")
			c.URIs = []*url.URL{u}
		}, field: "spec.subjectAltNames", text: "ns/bank"},
		{name: "UPN of someone else", tmpl: func(c *scep.CSRTemplate) { c.UPNs = []string{"administrator@corp.example"} }, field: "spec.subjectAltNames", text: "UPN"},
		{name: "SAN templates without an owner", vars: func(v Variables) { delete(v, "certificatename") }, spec: func(s *v1.SCEPProfileSpec) { s.Subject, s.AllowAnySubject = "", true }, field: "spec.subjectAltNames", text: "made by a cert-manager Certificate"},
		{name: "email elsewhere", tmpl: func(c *scep.CSRTemplate) { c.EmailAddresses = []string{"a@bank.corp.example"} }, field: "spec.subjectAltNames", text: "RFC822Name"},
		{name: "IP address", tmpl: func(c *scep.CSRTemplate) { c.IPAddresses = []net.IP{net.IPv4(10, 0, 0, 1)} }, field: "spec.subjectAltNames", text: `"10.0.0.1"`},
		{name: "IP address with allowAnySubjectAltNames", spec: func(s *v1.SCEPProfileSpec) { s.SubjectAltNames, s.AllowAnySubjectAltNames = nil, true }, tmpl: func(c *scep.CSRTemplate) { c.IPAddresses = []net.IP{net.ParseIP("fe80::1")} }, field: "spec.subjectAltNames", text: "IP address"},
		{name: "directoryName", ext: exts(sans(dnsName("web.shop.svc.cluster.local"), tagged(4, true, dirName))), field: "spec.subjectAltNames", text: "directoryName"},
		{name: "registeredID", ext: exts(sans(tagged(8, false, regID[2:]))), field: "spec.subjectAltNames", text: "registeredID"},
		{name: "x400Address", ext: exts(sans(tagged(3, true, nil))), field: "spec.subjectAltNames", text: "x400Address"},
		{name: "ediPartyName", ext: exts(sans(tagged(5, true, nil))), field: "spec.subjectAltNames", text: "ediPartyName"},
		{name: "otherName other than UPN", ext: exts(sans(upn(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 25, 1}, "web.shop@corp.example"))), field: "spec.subjectAltNames", text: "1.3.6.1.4.1.311.25.1"},
		{name: "UPN written raw fits", ext: exts(sans(upn(oidUPN, "web.shop@corp.example")))},
		{name: "control character in a DNS name", tmpl: func(c *scep.CSRTemplate) { c.DNSNames = []string{"x\x00.apps.corp.example"} }, field: "spec.subjectAltNames", text: "printable ASCII"},
		{name: "empty SAN list refuses alternative names", spec: func(s *v1.SCEPProfileSpec) { s.SubjectAltNames = nil }, field: "spec.subjectAltNames", text: "allowAnySubjectAltNames"},
		{name: "empty SAN list allows a request without them", spec: func(s *v1.SCEPProfileSpec) { s.SubjectAltNames = nil }, tmpl: func(c *scep.CSRTemplate) { *c = scep.CSRTemplate{Subject: c.Subject} }},
		{name: "allowAnySubjectAltNames", spec: func(s *v1.SCEPProfileSpec) { s.SubjectAltNames, s.AllowAnySubjectAltNames = nil, true }, tmpl: func(c *scep.CSRTemplate) {
			c.DNSNames = append(c.DNSNames, "anything.example")
		}},

		// Key usages and CA.
		{name: "key usage not allowed", spec: func(s *v1.SCEPProfileSpec) { s.KeyUsage = []v1.KeyUsage{v1.KeyUsageDigitalSignature} }, field: "spec.keyUsage", text: "KeyEncipherment"},
		{name: "cert signing asked", tmpl: func(c *scep.CSRTemplate) { c.KeyUsage |= x509.KeyUsageCertSign }, field: "spec.keyUsage", text: "CertSign"},
		{name: "cert signing asked from a profile allowing any key usage", spec: func(s *v1.SCEPProfileSpec) { s.KeyUsage = nil }, tmpl: func(c *scep.CSRTemplate) { c.KeyUsage |= x509.KeyUsageCRLSign }, field: "spec.keyUsage", text: "CRLSign"},
		{name: "spec.isCA", isCA: true, field: "spec.isCA", text: "remove isCA"},
		{name: "basicConstraints CA:true", ext: exts(basic(true)), field: "spec.isCA", text: "CA:true"},
		{name: "basicConstraints CA:false fits", ext: exts(basic(false))},

		// Extended key usages.
		{name: "EKU listed", ext: exts(eku(oidServerAuth))},
		{name: "EKU not listed", ext: exts(eku(oidServerAuth, oidClientAuth)), field: "spec.extendedKeyUsages", text: "ClientAuth (1.3.6.1.5.5.7.3.2); the profile allows ServerAuth"},
		{name: "EKU with none listed", spec: func(s *v1.SCEPProfileSpec) { s.ExtendedKeyUsages = nil }, ext: exts(eku(oidServerAuth)), field: "spec.extendedKeyUsages", text: "allows none"},
		{name: "EKU listed as a dotted OID", spec: func(s *v1.SCEPProfileSpec) { s.ExtendedKeyUsages = []string{"1.3.6.1.5.5.7.3.2"} }, ext: exts(eku(oidClientAuth))},
		{name: "anyExtendedKeyUsage", ext: exts(eku(oidAnyEKU)), field: "spec.extendedKeyUsages", text: "anyExtendedKeyUsage"},
		{name: "anyExtendedKeyUsage even when listed", spec: func(s *v1.SCEPProfileSpec) { s.ExtendedKeyUsages = []string{"2.5.29.37.0"} }, ext: exts(eku(oidAnyEKU)), field: "spec.extendedKeyUsages", text: "never issued"},

		// Other extensions.
		{name: "unknown extension", ext: exts(ext(oidNTDSSID, "S-1-5-21-1-500")), field: "spec.allowedExtensions", text: "Microsoft NTDS security identifier"},
		{name: "allowed extension", spec: func(s *v1.SCEPProfileSpec) { s.AllowedExtensions = []string{oidNTDSSID.String()} }, ext: exts(ext(oidNTDSSID, "S-1-5-21-1-500"))},
		{name: "a template named by the request", ext: exts(ext(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2}, "Administrator")), field: "spec.certificateTemplate", text: "may not choose its template"},
		{name: "a template named by the request even when allowed (a profile from before the CEL rule)", spec: func(s *v1.SCEPProfileSpec) { s.AllowedExtensions = []string{"1.3.6.1.4.1.311.21.7"} }, ext: exts(ext(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 21, 7}, 1)), field: "spec.certificateTemplate", text: "may not choose its template"},
		{name: "subjectKeyIdentifier", ext: exts(ext(oidExtSubjectKeyIdentifier, []byte{1, 2, 3}))},
		{name: "allowedExtensions does not lift the CA refusal", spec: func(s *v1.SCEPProfileSpec) { s.AllowedExtensions = []string{"2.5.29.19"} }, ext: exts(basic(true)), field: "spec.isCA", text: "CA:true"},
		{name: "duplicate extension", csr: func(t testing.TB) *x509.CertificateRequest {
			// crypto/x509 refuses this one itself; Check does not rely on it.
			tbs := rawTBS(t, goodSubject, extensionRequest(t, basic(false)(t), basic(true)(t)))
			return &x509.CertificateRequest{RawTBSCertificateRequest: tbs, PublicKey: &rsaKey.PublicKey}
		}, field: "spec.request", text: "basicConstraints (2.5.29.19) twice"},

		// CSR attributes.
		{name: "only extensionRequest fits", csr: func(t testing.TB) *x509.CertificateRequest {
			return rawCSR(t, goodSubject, extensionRequest(t))
		}},
		{name: "challengePassword", csr: func(t testing.TB) *x509.CertificateRequest {
			return rawCSR(t, goodSubject, extensionRequest(t), rawAttribute{Type: oidChallengePassword, Values: []asn1.RawValue{rawValue(t, "secret")}})
		}, field: "spec.request", text: "challengePassword"},
		{name: "Microsoft name-value pair", csr: func(t testing.TB) *x509.CertificateRequest {
			pair := struct{ Name, Value string }{"SAN", "upn=administrator@corp.example"}
			return rawCSR(t, goodSubject, rawAttribute{Type: oidMSNameValuePair, Values: []asn1.RawValue{rawValue(t, pair)}})
		}, field: "spec.request", text: "name-value pairs"},
		{name: "Microsoft certificate extensions attribute", csr: func(t testing.TB) *x509.CertificateRequest {
			return rawCSR(t, goodSubject, rawAttribute{Type: oidMSCertExtensions, Values: []asn1.RawValue{rawValue(t, []pkix.Extension{basic(true)(t)})}})
		}, field: "spec.request", text: "1.3.6.1.4.1.311.2.1.14"},
		{name: "extensionRequest with a second value", csr: func(t testing.TB) *x509.CertificateRequest {
			a := extensionRequest(t)
			a.Values = append(a.Values, rawValue(t, []pkix.Extension{basic(true)(t)}))
			return rawCSR(t, goodSubject, a)
		}, field: "spec.request", text: "more than once"},
		{name: "two extensionRequest attributes", csr: func(t testing.TB) *x509.CertificateRequest {
			return rawCSR(t, goodSubject, extensionRequest(t), extensionRequest(t, ext(oidNTDSSID, "x")(t)))
		}, field: "spec.request", text: "more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec()
			if tt.spec != nil {
				tt.spec(&s)
			}
			vars := testVars()
			if tt.vars != nil {
				tt.vars(vars)
			}
			var csr *x509.CertificateRequest
			if tt.csr != nil {
				csr = tt.csr(t)
			} else {
				tmpl := good
				if tt.tmpl != nil {
					tt.tmpl(&tmpl)
				}
				if tt.ext != nil {
					tt.ext(t, &tmpl)
				}
				key := crypto.Signer(rsaKey)
				if tt.key != nil {
					key = tt.key
				}
				csr = csrOf(t, tmpl, key)
			}
			err := Check(&s, Request{CSR: csr, IsCA: tt.isCA, Vars: vars})
			if tt.field == "" {
				if err != nil {
					t.Fatalf("a fitting request was refused: %v", err)
				}
				return
			}
			t.Log(err)
			var v *Violation
			if !errors.As(err, &v) || v.Field != tt.field || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want a violation of %s mentioning %q", err, tt.field, tt.text)
			}
		})
	}
}

func TestNDESSubject(t *testing.T) {
	vars := testVars()
	ndes := v1.SCEPProfileSpec{URL: "http://ndes.corp/certsrv/mscep/mscep.dll", AllowAnySubject: true}
	for _, cn := range []string{"a+b", "a;b", "a,b", "a=b"} {
		err := Check(&ndes, Request{CSR: csrOf(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: cn}}, rsaKey), Vars: vars})
		if v, ok := err.(*Violation); !ok || v.Field != "spec.subject" || !strings.Contains(err.Error(), "NDES") {
			t.Errorf("CN=%s: err = %v", cn, err)
		}
	}
	if err := Check(&ndes, Request{CSR: csrOf(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "web.shop"}}, rsaKey), Vars: vars}); err != nil {
		t.Errorf("a plain subject was refused: %v", err)
	}
	other := v1.SCEPProfileSpec{URL: "http://mdm.example/scep", AllowAnySubject: true}
	if err := Check(&other, Request{CSR: csrOf(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "a+b"}}, rsaKey), Vars: vars}); err != nil {
		t.Errorf("a non-NDES server was held to NDES's rule: %v", err)
	}
}

// A template value that is not valid UTF-8 (found by FuzzCheck, corpus
// testdata/fuzz/FuzzCheck/5c5b61bffb09362c) matches nothing; no panic.
func TestInvalidUTF8Template(t *testing.T) {
	csr := csrOf(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "\u00e9"}, DNSNames: []string{"web.shop"}}, rsaKey)
	spec := v1.SCEPProfileSpec{AllowAnySubject: true, SubjectAltNames: []v1.SubjectAltName{{Type: v1.SANTypeDNSName, Value: "\xe9"}}}
	err := Check(&spec, Request{CSR: csr})
	if v, ok := err.(*Violation); !ok || v.Field != "spec.subjectAltNames" {
		t.Fatalf("err = %v, want a violation of spec.subjectAltNames", err)
	}
	spec = v1.SCEPProfileSpec{Subject: "CN=\xe9"}
	if err := Check(&spec, Request{CSR: csr}); err == nil {
		t.Fatal("a subject template that is not UTF-8 matched")
	}
}

// Check never panics on a nil profile or CSR, and says what is missing.
func TestCheckNil(t *testing.T) {
	if err := Check(nil, Request{CSR: csrOf(t, webShopTemplate(), rsaKey)}); err == nil {
		t.Error("no profile: no error")
	}
	s := testSpec()
	if err := Check(&s, Request{}); err == nil || !strings.Contains(err.Error(), "spec.request") {
		t.Errorf("no CSR: err = %v", err)
	}
	if err := Check(&s, Request{CSR: &x509.CertificateRequest{}}); err == nil || !strings.Contains(err.Error(), "cannot be read") {
		t.Errorf("a CSR without its encoding: err = %v", err)
	}
}

// Messages repeat a tenant's strings only up to maxQuoted bytes.
func TestMessagesAreBounded(t *testing.T) {
	long := strings.Repeat("a", 5000) + ".apps.example"
	s := testSpec()
	tmpl := webShopTemplate()
	tmpl.DNSNames = []string{long}
	err := Check(&s, Request{CSR: csrOf(t, tmpl, rsaKey), Vars: testVars()})
	if err == nil || len(err.Error()) > 1500 || !strings.Contains(err.Error(), "(5013 bytes)") {
		t.Fatalf("err = %v (%d bytes)", err, len(err.Error()))
	}
	vars := testVars()
	vars["email"] = strings.Repeat("é", 3000)
	s.Subject = "CN=%email%"
	err = Check(&s, Request{CSR: csrOf(t, webShopTemplate(), rsaKey), Vars: vars})
	if err == nil || len(err.Error()) > 1500 {
		t.Fatalf("err = %v (%d bytes)", err, len(err.Error()))
	}
	if got := quote(strings.Repeat("é", 100)); !strings.HasSuffix(got, `"… (200 bytes)`) {
		t.Errorf("quote = %s", got)
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		spec v1.SCEPProfileSpec
		want []string
	}{
		{"constrained", testSpec(), nil},
		{"any subject and SANs", v1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true}, []string{"allowAnySubject", "allowAnySubjectAltNames"}},
		{"email unconstrained", v1.SCEPProfileSpec{Subject: "CN=%email%", SubjectAltNames: []v1.SubjectAltName{{Type: v1.SANTypeDNSName, Value: "%email%.example"}}},
			[]string{"%email% is used in spec.subject and spec.subjectAltNames[0] but spec.variables.email does not constrain it"}},
		{"email constrained", v1.SCEPProfileSpec{Subject: "CN=%email%", Variables: &v1.VariableConstraints{Email: []string{"*@corp.example"}}}, nil},
		{"UPN any namespace can claim", v1.SCEPProfileSpec{Subject: "CN=x", SubjectAltNames: []v1.SubjectAltName{{Type: v1.SANTypeUPN, Value: "%certificatename%@corp.example"}}},
			[]string{`spec.subjectAltNames[0] (UPN "%certificatename%@corp.example") is an identity any namespace`}},
		{"RFC822 glob", v1.SCEPProfileSpec{Subject: "CN=x", SubjectAltNames: []v1.SubjectAltName{{Type: v1.SANTypeRFC822Name, Value: "*@corp.example"}}},
			[]string{"spec.subjectAltNames[0] (RFC822Name"}},
		{"UPN with the namespace", v1.SCEPProfileSpec{Subject: "CN=x", SubjectAltNames: []v1.SubjectAltName{{Type: v1.SANTypeUPN, Value: "%certificatename%.%namespace%@corp.example"}}}, nil},
		{"UPN from an email tied to the namespace", v1.SCEPProfileSpec{Subject: "CN=x", Variables: &v1.VariableConstraints{Email: []string{"%namespace%-*@corp.example"}},
			SubjectAltNames: []v1.SubjectAltName{{Type: v1.SANTypeUPN, Value: "%email%"}}}, nil},
		{"UPN from an email constrained to a domain", v1.SCEPProfileSpec{Subject: "CN=x", Variables: &v1.VariableConstraints{Email: []string{"*@corp.example"}},
			SubjectAltNames: []v1.SubjectAltName{{Type: v1.SANTypeUPN, Value: "%email%"}}}, []string{"spec.subjectAltNames[0] (UPN"}},
		{"a fixed UPN", v1.SCEPProfileSpec{Subject: "CN=x", SubjectAltNames: []v1.SubjectAltName{{Type: v1.SANTypeUPN, Value: "svc-web@%domainname%"}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Warnings(&tt.spec)
			if len(got) != len(tt.want) {
				t.Fatalf("Warnings = %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
