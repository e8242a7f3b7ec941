package attack

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/test/ndes"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestProfileValidation: what a tenant may not configure is refused by the
// API server itself (the CRD's CEL rules), before the operator sees it,
// and a tenant cannot write cluster-wide profiles at all: credentials
// never cross plain http unless a profile says so, a challenge never goes
// unpinned over http, namespaced profiles have no namespaceSelector, and
// "any subject" is explicit (findings 3 and 8).
func TestProfileValidation(t *testing.T) {
	nd := ndes.Start(t, ndes.Options{})
	srv := scepserver.Start(t, scepserver.Behavior{})
	c := attacker(t)
	// The tenant's Secrets for its profiles: NDES admin credentials and a
	// static password.
	neverShown("NDES admin password", ndes.DefaultPassword)
	neverShown("the tenant's static password", "tenant-static-4e1d")
	create(t, c, &corev1.Secret{ObjectMeta: objectMeta(tenant, "ndes-admin"), StringData: map[string]string{"username": ndes.DefaultDomain + `\` + ndes.DefaultUsername, "password": ndes.DefaultPassword}})
	create(t, c, &corev1.Secret{ObjectMeta: objectMeta(tenant, "static-password"), StringData: map[string]string{"password": "tenant-static-4e1d"}})

	// dynamic is a SCEPProfile with NDES's Dynamic challenge, the admin
	// page over http.
	dynamic := func(name string, change func(*scepv1alpha1.SCEPProfileSpec)) *scepv1alpha1.SCEPProfile {
		p := &scepv1alpha1.SCEPProfile{ObjectMeta: objectMeta(tenant, name), Spec: scepv1alpha1.SCEPProfileSpec{
			URL: nd.URL, CAFingerprint: nd.Thumbprint, AllowAnySubject: true, CSRMode: scepv1alpha1.CSRModeRebuild,
			Challenge: scepv1alpha1.Challenge{Type: scepv1alpha1.ChallengeDynamic, Dynamic: &scepv1alpha1.DynamicChallenge{
				URL: nd.AdminURL, Auth: "NTLM", CredentialsSecretRef: scepv1alpha1.LocalObjectReference{Name: "ndes-admin"},
			}},
		}}
		if change != nil {
			change(&p.Spec)
		}
		return p
	}
	// static is a SCEPProfile with a Static challenge over http, pinned.
	static := func(name string, change func(*scepv1alpha1.SCEPProfileSpec)) *scepv1alpha1.SCEPProfile {
		p := tenantProfileSpec(name, srv)
		p.Spec.CSRMode = scepv1alpha1.CSRModeRebuild
		p.Spec.Challenge = scepv1alpha1.Challenge{Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: "static-password"}}
		if change != nil {
			change(&p.Spec)
		}
		return p
	}
	ndesReached := func() int { n := nd.Counters(); return n.AdminRequests + len(nd.SCEP.HTTPRequests()) }
	srvReached := func() int { return len(srv.HTTPRequests()) }
	// accepted creates p and waits for the operator to check it.
	accepted := func(t *testing.T, p *scepv1alpha1.SCEPProfile) error {
		if err := try(t, c, p); err != nil {
			return err
		}
		waitProfile(t, p, metav1.ConditionTrue)
		return nil
	}

	runAPIRows(t, []apiRow{
		{
			name: "the tenant writes a ClusterSCEPProfile",
			attack: func(t *testing.T) error {
				return try(t, c, &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: objectMeta("", "tenant-wide"), Spec: tenantProfileSpec("", srv).Spec})
			},
			forbidden: true,
			reached:   srvReached,
		},
		{
			name:    "a Dynamic challenge with the NDES admin page over http://, without allowPlainHTTP (NTLM relayable to AD CS)",
			attack:  func(t *testing.T) error { return try(t, c, dynamic("api-ndes-http", nil)) },
			invalid: true,
			says:    []string{"allowPlainHTTP"},
			reached: ndesReached,
		},
		{
			name: "control: the same profile with allowPlainHTTP: true is accepted and turns Ready",
			attack: func(t *testing.T) error {
				return accepted(t, dynamic("api-ndes-http-allowed", func(s *scepv1alpha1.SCEPProfileSpec) { s.Challenge.Dynamic.AllowPlainHTTP = true }))
			},
		},
		{
			name: "a Static challenge over http:// without caFingerprint (the password is encrypted to whoever answers GetCACert)",
			attack: func(t *testing.T) error {
				return try(t, c, static("api-static-unpinned", func(s *scepv1alpha1.SCEPProfileSpec) { s.CAFingerprint = "" }))
			},
			invalid: true,
			says:    []string{"caFingerprint"},
			reached: srvReached,
		},
		{
			name:   "control: the same profile with caFingerprint is accepted and turns Ready",
			attack: func(t *testing.T) error { return accepted(t, static("api-static-pinned", nil)) },
		},
		{
			name: "a namespaceSelector on a SCEPProfile",
			attack: func(t *testing.T) error {
				return try(t, c, static("api-selector", func(s *scepv1alpha1.SCEPProfileSpec) { s.NamespaceSelector = &metav1.LabelSelector{} }))
			},
			invalid: true,
			says:    []string{"namespaceSelector"},
			reached: srvReached,
		},
		{
			name: "a SCEPProfile with neither subject nor allowAnySubject (an implicit any-subject profile)",
			attack: func(t *testing.T) error {
				return try(t, c, static("api-no-subject", func(s *scepv1alpha1.SCEPProfileSpec) { s.AllowAnySubject = false }))
			},
			invalid: true,
			says:    []string{"allowAnySubject"},
			reached: srvReached,
		},
	})
}

// tenantProfileSpec is the SCEPProfile tenantProfile would write for srv,
// not yet created.
func tenantProfileSpec(name string, srv *scepserver.Server) *scepv1alpha1.SCEPProfile {
	return &scepv1alpha1.SCEPProfile{ObjectMeta: objectMeta(tenant, name), Spec: scepv1alpha1.SCEPProfileSpec{
		URL: srv.URL, CAFingerprint: fingerprint(srv), AllowAnySubject: true,
	}}
}
