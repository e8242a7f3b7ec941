package attack

import (
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestNamespaceScope: a ClusterSCEPProfile serves the namespaces its
// namespaceSelector selects, on every attempt and before anything is sent;
// the labels it selects on and the profile are the cluster admin's, not the
// tenant's (finding 3).
func TestNamespaceScope(t *testing.T) {
	t.Run("the chart lets the operator read Namespaces, which namespaceSelector needs", func(t *testing.T) {
		up(t)
		if !world.namespacesAllowed {
			t.Fatal("the operator's ServiceAccount may not watch Namespaces with the chart's RBAC: every request for a ClusterSCEPProfile with a namespaceSelector waits forever")
		}
	})

	srv := scepserver.Start(t, scepserver.Behavior{})
	victimsOnly := clusterProfile(t, "attack-scope-victims", srv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.NamespaceSelector = inTeams(victim)
		s.AllowAnySubjectAltNames = true
	})
	runRequestRows(t, []*scepserver.Server{srv}, []requestRow{
		{
			name: "control: a victim Certificate for the profile that selects victim is issued",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return requestOf(t, certificate(t, admin(t), victim, "scope-victim", victimsOnly, nil))
			},
			want: verdict{issued: true},
		},
		{
			name: "a tenant Certificate for a ClusterSCEPProfile whose namespaceSelector selects only victim",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return requestOf(t, certificate(t, attacker(t), tenant, "scope-tenant", victimsOnly, nil))
			},
			want: verdict{refused: []string{signer.ReasonNamespaceNotAllowed}, says: []string{"spec.namespaceSelector", "namespace " + tenant}},
		},
	})
	runAPIRows(t, []apiRow{
		{
			name: "the tenant labels its own namespace into the selector",
			attack: func(t *testing.T) error {
				patch := []byte(`{"metadata":{"labels":{"` + teamLabel + `":"` + victim + `"}}}`)
				return attacker(t).Patch(t.Context(), &corev1.Namespace{ObjectMeta: objectMeta("", tenant)}, client.RawPatch(types.MergePatchType, patch))
			},
			forbidden: true,
		},
		{
			name: "the tenant widens the ClusterSCEPProfile's namespaceSelector",
			attack: func(t *testing.T) error {
				patch := []byte(`{"spec":{"namespaceSelector":{}}}`)
				return attacker(t).Patch(t.Context(), &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: objectMeta("", victimsOnly.Name)}, client.RawPatch(types.MergePatchType, patch))
			},
			forbidden: true,
		},
	})
}

// TestEmptySubjectAltNames: a profile that lists no alternative names
// allows none, unless it says allowAnySubjectAltNames (finding 3: "no
// constraint" is explicit, never the default).
func TestEmptySubjectAltNames(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{})
	noNames := clusterProfile(t, "attack-scope-no-names", srv, nil)
	runRequestRows(t, []*scepserver.Server{srv}, []requestRow{
		{
			name: "control: a Certificate with a subject and no alternative names is issued",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return requestOf(t, certificate(t, attacker(t), tenant, "names-none", noNames, nil))
			},
			want: verdict{issued: true},
		},
		{
			name: "a Certificate asks for a DNS name from a profile that lists no alternative names",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return requestOf(t, certificate(t, attacker(t), tenant, "names-dns", noNames, func(c *cmapi.Certificate) {
					c.Spec.DNSNames = []string{"www.corp.example"}
				}))
			},
			want: verdict{refused: []string{signer.ReasonPolicyViolation}, says: []string{"spec.subjectAltNames", "www.corp.example"}},
		},
	})
}
