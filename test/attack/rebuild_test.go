package attack

import (
	"crypto/rsa"
	"crypto/x509/pkix"
	"fmt"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/pemkey"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

const rebuildChallenge = "attack-rebuild-2b9e47d1"

// holdFinalizer is the attacker's finalizer that keeps a deleted
// Certificate (see frozen).
const holdFinalizer = "tenant.example/hold"

// frozenCertificate is a tenant Certificate held while issuing: its pending
// private key Secret exists and cert-manager leaves it and the requests
// controlled by it alone. An attacker gets there by naming an issuer that
// never answers, then deleting the Certificate behind a finalizer of their
// own (cert-manager's key and request managers skip a Certificate being
// deleted, and a finalizer keeps it, and so its dependents, indefinitely).
type frozenCertificate struct {
	crt *cmapi.Certificate
	// keySecret is its pending private key Secret; key is the key in it.
	keySecret *corev1.Secret
	key       *rsa.PrivateKey
}

// freeze makes a frozenCertificate named name in tenant.
func freeze(t *testing.T, name string) frozenCertificate {
	t.Helper()
	c := attacker(t)
	nowhere := &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: "attack-nowhere"}}
	crt := certificate(t, c, tenant, name, nowhere, nil)
	secret := &corev1.Secret{}
	eventually(t, finishTimeout, "the pending private key of Certificate "+name, func() (bool, string) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(crt), crt); err != nil {
			return false, err.Error()
		}
		if crt.Status.NextPrivateKeySecretName == nil {
			return false, "no status.nextPrivateKeySecretName"
		}
		err := c.Get(t.Context(), client.ObjectKey{Namespace: tenant, Name: *crt.Status.NextPrivateKeySecretName}, secret)
		return err == nil && len(secret.Data[corev1.TLSPrivateKeyKey]) > 0, fmt.Sprint(err)
	})
	patch := []byte(`{"metadata":{"finalizers":["` + holdFinalizer + `"]}}`)
	if err := c.Patch(t.Context(), crt, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(t.Context(), crt); err != nil {
		t.Fatal(err)
	}
	eventually(t, eventTimeout, "Certificate "+name+" held while being deleted", func() (bool, string) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(crt), crt); err != nil {
			return false, err.Error()
		}
		return crt.DeletionTimestamp != nil, "not being deleted yet"
	})
	key, err := pemkey.Parse(secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(secret.Data[corev1.TLSPrivateKeyKey])), "\n"); len(lines) > 2 {
		neverShown("the pending private key of "+name, lines[len(lines)/2])
	}
	return frozenCertificate{crt: crt, keySecret: secret, key: key.(*rsa.PrivateKey)}
}

// ownedBy is the controller ownerReference cert-manager puts on requests of
// Certificate name with uid.
func ownedBy(name string, uid types.UID) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(&metav1.ObjectMeta{Name: name, UID: uid}, cmapi.SchemeGroupVersion.WithKind(cmapi.CertificateKind))}
}

// TestRebuildPointers: csrMode Rebuild reads a Certificate's pending private
// key through pointers a tenant can set (a request's ownerReference, the
// Secret's labels); each is checked against the next, so a tenant never
// gets a challenge-bearing CSR signed for a request that is not its
// Certificate's with that Certificate's pending key (finding 10).
func TestRebuildPointers(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{Challenge: rebuildChallenge})
	p := clusterProfile(t, "attack-rebuild", srv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.CSRMode = scepv1alpha1.CSRModeRebuild
		s.Challenge = staticChallenge(t, "attack-rebuild-challenge", rebuildChallenge)
		// Any names: each row's refusal is Rebuild's, not the policy's.
		s.Subject, s.AllowAnySubject, s.AllowAnySubjectAltNames = "", true, true
	})
	// The victim's Certificate, named as the tenant's held one; its request
	// is what the tenant copies.
	victimWeb := certificate(t, admin(t), victim, "web", p, nil)
	victimRequest := waitFinished(t, requestOf(t, victimWeb))
	// request is a hand-made request for p owned as owners say, with csr.
	request := func(t *testing.T, name string, owners []metav1.OwnerReference, csr []byte) *cmapi.CertificateRequest {
		cr := handMade(t, name, p, csr, func(cr *cmapi.CertificateRequest) { cr.OwnerReferences = owners })
		keepMaking(cr)
		return cr
	}
	signedBy := func(t *testing.T, key *rsa.PrivateKey, cn string) []byte {
		return csrPEM(t, key, scep.CSRTemplate{Subject: pkix.Name{CommonName: cn}})
	}
	challenged := func(t *testing.T, cr *cmapi.CertificateRequest, since []tally) {
		expectChallenge(t, srv, cr, since[0], rebuildChallenge)
	}

	runRequestRows(t, []*scepserver.Server{srv}, []requestRow{
		{
			name:       "control: the victim's Certificate is issued, with the challenge",
			attack:     func(t *testing.T) *cmapi.CertificateRequest { return victimRequest },
			want:       verdict{issued: true},
			then:       challenged,
			madeBefore: true,
		},
		{
			name: "control: a request owned by the tenant's own Certificate and signed by its pending key is issued, with the challenge",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				own := freeze(t, "rebuild-own")
				return request(t, "rebuild-own", ownedBy(own.crt.Name, own.crt.UID), signedBy(t, own.key, "rebuild-own."+tenant))
			},
			want: verdict{issued: true},
			then: challenged,
		},
		{
			name: "an ownerReference with the tenant's Certificate's name and the victim's Certificate's UID",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				web := freeze(t, "web")
				return request(t, "rebuild-wrong-uid", ownedBy("web", victimWeb.UID), signedBy(t, web.key, "web."+tenant))
			},
			want: verdict{refused: []string{signer.ReasonNotACertificateRequest}, says: []string{"UID", string(victimWeb.UID)}},
		},
		{
			name: "the victim's CSR copied into a request owned by the tenant's own Certificate",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				own := freeze(t, "rebuild-copy")
				return request(t, "rebuild-copied-csr", ownedBy(own.crt.Name, own.crt.UID), victimRequest.Spec.Request)
			},
			want: verdict{refused: []string{signer.ReasonPolicyViolation}, says: []string{"does not match the request's CSR"}},
		},
		{
			name: "a pending private key Secret without cert-manager's label",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				own := freeze(t, "rebuild-unlabelled")
				patch := []byte(`{"metadata":{"labels":{"` + cmapi.IsNextPrivateKeySecretLabelKey + `":null}}}`)
				if err := attacker(t).Patch(t.Context(), own.keySecret, client.RawPatch(types.MergePatchType, patch)); err != nil {
					t.Fatal(err)
				}
				return request(t, "rebuild-unlabelled", ownedBy(own.crt.Name, own.crt.UID), signedBy(t, own.key, "rebuild-unlabelled."+tenant))
			},
			want: verdict{refused: []string{signer.ReasonNotACertificateRequest}, says: []string{cmapi.IsNextPrivateKeySecretLabelKey}},
		},
	})
}
