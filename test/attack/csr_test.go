package attack

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestCSRContent: everything a CSR carries is checked against the profile,
// not only its subject and four SAN types: a CA certificate, extended key
// usages the profile does not list, other SAN types, extensions and CSR
// attributes a CA would honour are refused before anything is sent
// (finding 6). The requests are made by hand, so each carries exactly the
// one thing under attack; the profile's templates use no variable a
// hand-made request lacks.
func TestCSRContent(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{})
	p := clusterProfile(t, "attack-csr", srv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.SubjectAltNames = []scepv1alpha1.SubjectAltName{
			{Type: scepv1alpha1.SANTypeDNSName, Value: "*.%namespace%.svc.%domainname%"},
			{Type: scepv1alpha1.SANTypeUPN, Value: "*.%namespace%@" + upnDomain},
		}
		s.KeyUsage = []scepv1alpha1.KeyUsage{scepv1alpha1.KeyUsageDigitalSignature, scepv1alpha1.KeyUsageKeyEncipherment}
		s.ExtendedKeyUsages = []string{"ServerAuth", "ClientAuth"}
	})
	// request is a hand-made request that fits p (subject, a DNS name and a
	// UPN of the namespace, serverAuth), with change applied to its CSR
	// template and attributes added.
	fitting := func(t *testing.T, name string) scep.CSRTemplate {
		return scep.CSRTemplate{
			Subject: pkix.Name{CommonName: name + "." + tenant},
			Extensions: []pkix.Extension{
				sans(t, dnsName(name+"."+tenant+".svc."+clusterDomain), upnName(t, name+"."+tenant+"@"+upnDomain)),
				ekus(t, oidServerAuth),
			},
		}
	}
	request := func(t *testing.T, name string, change func(*scep.CSRTemplate), attributes ...[]byte) *cmapi.CertificateRequest {
		tmpl := fitting(t, name)
		if change != nil {
			change(&tmpl)
		}
		return handMade(t, name, p, csrPEM(t, newKey(t), tmpl, attributes...), nil)
	}
	// withSANs replaces the DNS name and UPN with names.
	withSANs := func(t *testing.T, name string, names ...asn1.RawValue) func(*scep.CSRTemplate) {
		return func(tm *scep.CSRTemplate) {
			tm.Extensions[0] = sans(t, append([]asn1.RawValue{dnsName(name + "." + tenant + ".svc." + clusterDomain)}, names...)...)
		}
	}
	refused := func(says ...string) verdict {
		return verdict{refused: []string{signer.ReasonPolicyViolation}, says: says}
	}

	runRequestRows(t, []*scepserver.Server{srv}, []requestRow{
		{
			name:   "control: a hand-made request with a DNS name, a UPN and serverAuth of the namespace is issued",
			attack: func(t *testing.T) *cmapi.CertificateRequest { return request(t, "csr-control", nil) },
			want:   verdict{issued: true},
		},
		{
			name: "control: a Certificate with usage server auth is issued",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return requestOf(t, certificate(t, attacker(t), tenant, "csr-crt", p, func(c *cmapi.Certificate) {
					c.Spec.DNSNames = []string{"csr-crt." + tenant + ".svc." + clusterDomain}
					c.Spec.Usages = []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageServerAuth}
				}))
			},
			want: verdict{issued: true},
		},
		{
			name: "basicConstraints CA:true in the CSR",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return request(t, "csr-ca-ext", func(tm *scep.CSRTemplate) {
					tm.Extensions = append(tm.Extensions, extension(t, oidBasicConstraints, true, struct{ IsCA bool }{true}))
				})
			},
			want: refused("spec.isCA", "basicConstraints"),
		},
		{
			name: "spec.isCA on a hand-made request",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return handMade(t, "csr-is-ca", p, csrPEM(t, newKey(t), fitting(t, "csr-is-ca")), func(cr *cmapi.CertificateRequest) { cr.Spec.IsCA = true })
			},
			want: refused("spec.isCA"),
		},
		{
			name: "a Certificate with isCA: true",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return requestOf(t, certificate(t, attacker(t), tenant, "csr-crt-ca", p, func(c *cmapi.Certificate) { c.Spec.IsCA = true }))
			},
			want: refused("spec.isCA | spec.keyUsage"),
		},
		{
			name: "an extended key usage the profile does not list (codeSigning)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return request(t, "csr-code-signing", func(tm *scep.CSRTemplate) { tm.Extensions[1] = ekus(t, oidServerAuth, oidCodeSigning) })
			},
			want: refused("spec.extendedKeyUsages", "CodeSigning | codeSigning | 1.3.6.1.5.5.7.3.3"),
		},
		{
			name: "anyExtendedKeyUsage",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return request(t, "csr-any-eku", func(tm *scep.CSRTemplate) { tm.Extensions[1] = ekus(t, oidAnyExtendedKeyUse) })
			},
			want: refused("spec.extendedKeyUsages", "anyExtendedKeyUsage"),
		},
		{
			name: "an IP address SAN",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return request(t, "csr-ip", func(tm *scep.CSRTemplate) {
					tm.Extensions[0] = sans(t, dnsName("csr-ip."+tenant+".svc."+clusterDomain), asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: net.ParseIP("10.0.0.1").To4()})
				})
			},
			want: refused("spec.subjectAltNames", "10.0.0.1"),
		},
		{
			name: "a directoryName SAN (CN=Administrator,OU=Users)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				admin := pkix.Name{CommonName: "Administrator", ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "Users"}}}
				return request(t, "csr-dirname", withSANs(t, "csr-dirname", directoryName(t, admin)))
			},
			want: refused("spec.subjectAltNames", "directoryName"),
		},
		{
			name: "a registeredID SAN",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return request(t, "csr-regid", withSANs(t, "csr-regid", registeredID(t, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 99})))
			},
			want: refused("spec.subjectAltNames", "registeredID"),
		},
		{
			name: "an otherName that is not a UPN (AD's object GUID)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				guid := make([]byte, 16)
				return request(t, "csr-othername", withSANs(t, "csr-othername", otherName(t, oidObjectGUID, guid)))
			},
			want: refused("spec.subjectAltNames", "otherName"),
		},
		{
			name: "an extension the profile does not allow (Microsoft application policies: Certificate Request Agent, ESC15)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return request(t, "csr-esc15", func(tm *scep.CSRTemplate) {
					type policyInformation struct{ ID asn1.ObjectIdentifier }
					tm.Extensions = append(tm.Extensions, extension(t, oidApplicationPolicies, false, []policyInformation{{oidCertificateRequestAgent}}))
				})
			},
			want: refused("spec.allowedExtensions", "1.3.6.1.4.1.311.21.10"),
		},
		{
			name: "a certificate template the tenant picks (szOID_ENROLL_CERTTYPE_EXTENSION naming Administrator; only the profile's certificateTemplate is sent)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return request(t, "csr-template", func(tm *scep.CSRTemplate) {
					tm.Extensions = append(tm.Extensions, extension(t, oidEnrollCertType, false, bmpString("Administrator")))
				})
			},
			want: refused("spec.certificateTemplate", "may not choose its template"),
		},
		{
			name: "a challengePassword attribute in a Passthrough CSR (a password the tenant holds reaches the server)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return request(t, "csr-challenge", func(tm *scep.CSRTemplate) { tm.ChallengePassword = "tenant-picked-password" })
			},
			want: refused("spec.request", "challengePassword | 1.2.840.113549.1.9.7"),
		},
		{
			name: "a Microsoft name-value pair attribute SAN:upn=administrator@corp.example (EDITF_ATTRIBUTESUBJECTALTNAME2)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				pair := mustMarshal(t, struct{ Name, Value asn1.RawValue }{bmpString("SAN"), bmpString("upn=administrator@corp.example")})
				return request(t, "csr-name-value", nil, attribute(t, oidEnrollmentNameVals, pair))
			},
			want: refused("spec.request", "1.3.6.1.4.1.311.13.2.1 | enrollmentNameValuePair | name-value"),
		},
	})
}
