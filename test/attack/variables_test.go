package attack

import (
	"crypto/x509/pkix"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/policy"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// upnDomain is the AD domain of the UPN profile: a UPN there is an account
// that Wi-Fi, VPN and smart-card logon accept.
const upnDomain = "k8s.corp.example"

// TestVariables: a tenant chooses the values of some variables (the names
// of its Certificates, %email%) and writes annotations and ownerReferences
// freely on requests it makes by hand. No value may widen a template (a
// "*" stays a star, a "," stays in its attribute), %certificatename%
// comes only from the Certificate that owns the request, %email% only
// from what spec.variables.email allows, and the namespaced UPN template of
// docs/ndes.md never yields another account (finding 2).
func TestVariables(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{})
	upn := clusterProfile(t, "attack-variables-upn", srv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.Subject = "CN=%certificatename%.%namespace%"
		s.SubjectAltNames = []scepv1alpha1.SubjectAltName{{Type: scepv1alpha1.SANTypeUPN, Value: "%certificatename%.%namespace%@" + upnDomain}}
	})
	email := clusterProfile(t, "attack-variables-email", srv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.Subject = "CN=%certificatename%.%namespace%,OU=%email%"
		s.SubjectAltNames = []scepv1alpha1.SubjectAltName{{Type: scepv1alpha1.SANTypeRFC822Name, Value: "%email%"}}
		s.Variables = &scepv1alpha1.VariableConstraints{Email: []string{"*@corp.example"}}
	})
	withUPN := func(upn string) func(*cmapi.Certificate) {
		return func(c *cmapi.Certificate) {
			c.Spec.OtherNames = []cmapi.OtherName{{OID: "1.3.6.1.4.1.311.20.2.3", UTF8Value: upn}}
		}
	}
	// mail is a Certificate for the email profile: %email% from its
	// annotation, the organizational units and email addresses it asks for.
	mail := func(t *testing.T, name, value string, units, addresses []string) *cmapi.CertificateRequest {
		crt := certificate(t, attacker(t), tenant, name, email, func(c *cmapi.Certificate) {
			c.Annotations = map[string]string{policy.EmailAnnotation: value}
			c.Spec.Subject = &cmapi.X509Subject{OrganizationalUnits: units}
			c.Spec.EmailAddresses = addresses
		})
		return requestOf(t, crt)
	}
	refused := func(says ...string) verdict {
		return verdict{refused: []string{signer.ReasonPolicyViolation}, says: says}
	}

	runRequestRows(t, []*scepserver.Server{srv}, []requestRow{
		{
			name: "control: the victim's Certificate named administrator gets the UPN of its own namespace",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return requestOf(t, certificate(t, admin(t), victim, "administrator", upn, withUPN("administrator."+victim+"@"+upnDomain)))
			},
			want: verdict{issued: true},
		},
		{
			name: "a Certificate named administrator asks for the UPN administrator@" + upnDomain + " (ESC1)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return requestOf(t, certificate(t, attacker(t), tenant, "administrator", upn, withUPN("administrator@"+upnDomain)))
			},
			want: refused("spec.subjectAltNames", "administrator@"+upnDomain),
		},
		{
			name: "a hand-made request whose forged cert-manager.io/certificate-name adds a DN attribute (ops,O=Corp Admins)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				csr := csrPEM(t, newKey(t), scep.CSRTemplate{Subject: pkix.Name{CommonName: "ops", Organization: []string{"Corp Admins." + tenant}}})
				return handMade(t, "variables-forged-name", upn, csr, func(cr *cmapi.CertificateRequest) {
					cr.Annotations = map[string]string{cmapi.CertificateNameKey: "ops,O=Corp Admins"}
				})
			},
			want: refused("spec.subject"),
		},
		{
			name: "a hand-made request whose controller ownerReference names the Certificate *, which is not a Kubernetes name",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				csr := csrPEM(t, newKey(t), scep.CSRTemplate{Subject: pkix.Name{CommonName: "anyone." + tenant}})
				return handMade(t, "variables-star-owner", upn, csr, func(cr *cmapi.CertificateRequest) {
					cr.Annotations = map[string]string{cmapi.CertificateNameKey: "*"}
					cr.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(&metav1.ObjectMeta{Name: "*", UID: "0b6f2c1e-4f7e-4a51-9a43-5d4ad7e0c001"}, cmapi.SchemeGroupVersion.WithKind(cmapi.CertificateKind))}
				})
			},
			want: refused("spec.subject"),
		},
		{
			name: "control: %email% within spec.variables.email is issued",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return mail(t, "mail-ok", "alice@corp.example", []string{"alice@corp.example"}, []string{"alice@corp.example"})
			},
			want: verdict{issued: true},
		},
		{
			name: "%email% outside spec.variables.email (alice@evil.example)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return mail(t, "mail-evil", "alice@evil.example", []string{"alice@evil.example"}, []string{"alice@evil.example"})
			},
			want: refused("spec.variables.email", "alice@evil.example"),
		},
		{
			name: "* in %email% is a star, not a wildcard (*@corp.example asks for ceo@corp.example)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return mail(t, "mail-star", "*@corp.example", []string{"ceo@corp.example"}, []string{"ceo@corp.example"})
			},
			want: refused("spec.subject | spec.subjectAltNames | spec.variables.email"),
		},
		{
			name: ", in %email% stays in its attribute (Corp Admins,OU=alice@corp.example asks for OU=Corp Admins)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return mail(t, "mail-comma", "Corp Admins,OU=alice@corp.example", []string{"Corp Admins", "alice@corp.example"}, nil)
			},
			want: refused("spec.subject | spec.variables.email"),
		},
	})
}
