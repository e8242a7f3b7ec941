package attack

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestRenewalReqSecret: renewWithRenewalReq reads a Certificate's Secret
// (its current certificate and key) to sign a RenewalReq. A tenant's
// hand-made request claiming to be made by another namespace's Certificate
// (its ownerReference carries that Certificate's UID) makes the operator
// read nothing of that namespace: the Certificate and its Secret are looked
// up in the request's own namespace only, the UID must be the one found
// there, and the request is a fresh enrollment whose Event says why. The
// victim's certificate never signs anything.
func TestRenewalReqSecret(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{})
	p := clusterProfile(t, "attack-renewal", srv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.RenewWithRenewalReq = true
		s.AllowAnySubjectAltNames = true
	})
	// The victim's Certificate (for an issuer that does not exist, so that
	// cert-manager leaves it be) and its Secret, with a certificate of the
	// profile's CA.
	victimCert := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: victim, Name: "app"},
		Spec:       cmapi.CertificateSpec{SecretName: "app-tls", CommonName: "app." + victim, IssuerRef: cmmeta.IssuerReference{Name: "nowhere", Kind: "Issuer"}},
	}
	create(t, admin(t), victimCert)
	key := newKey(t)
	victimCrt := issuedBy(t, srv, "app."+victim, 77, key)
	create(t, admin(t), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: victim, Name: "app-tls", Annotations: map[string]string{cmapi.CertificateNameKey: "app"}},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: victimCrt.Raw}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		},
	})

	runRequestRows(t, []*scepserver.Server{srv}, []requestRow{
		{
			name: "a hand-made request owned by another namespace's Certificate (its UID): a fresh enrollment, nothing of that namespace read",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return handMade(t, "renew-foreign", p, csrPEM(t, newKey(t), fits("renew-foreign")), func(cr *cmapi.CertificateRequest) {
					cr.Annotations = map[string]string{cmapi.CertificateNameKey: "app"}
					cr.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(victimCert, cmapi.SchemeGroupVersion.WithKind("Certificate"))}
				})
			},
			want: verdict{issued: true},
			then: func(t *testing.T, cr *cmapi.CertificateRequest, since []tally) {
				if n := srv.PKIMessages("RenewalReq"); n != 0 {
					t.Errorf("%d RenewalReq reached the server", n)
				}
				for _, m := range srv.PKIRequests()[since[0].messages:] {
					if m.Signer != nil && m.Signer.Equal(victimCrt) {
						t.Errorf("a %s was signed with the victim's certificate", m.MessageType)
					}
				}
				for _, e := range eventsAbout(t, "CertificateRequest", cr) {
					if e.Reason == "SCEPIssued" {
						if !strings.Contains(e.Note, "not a RenewalReq: reading Certificate "+tenant+"/app") {
							t.Errorf("the Event does not say why it is no RenewalReq: %s", e.Note)
						}
						return
					}
				}
				t.Error("no SCEPIssued Event")
			},
		},
	})
}
