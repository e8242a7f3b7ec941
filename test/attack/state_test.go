package attack

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/base64"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// stateChallenge is the Static challenge of the Rebuild profile: it must
// reach the server only inside CSRs that fit the profile.
const stateChallenge = "attack-static-7f3a91c2"

// forgedState is a state annotation in the sealed format with a MAC the
// operator never computed: it claims a PENDING transaction (so that a
// trusting signer would only CertPoll, for the transaction it names) whose
// next poll is far away.
func forgedState(t *testing.T) string {
	t.Helper()
	mac := make([]byte, 32)
	if _, err := rand.Read(mac); err != nil {
		t.Fatal(err)
	}
	payload := `{"p":true,"n":"2099-01-01T00:00:00Z","s":"2026-01-01T00:00:00Z","t":"5f1d7c0a9e3b4d2c8a6f1e0b7d9c3a5e"}`
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(mac)
}

// legacyState are the annotations that held a request's transaction before
// the state was sealed (finding 1: a tenant set transaction-id and the
// policy check was skipped). They must mean nothing.
func legacyState() map[string]string {
	return map[string]string{
		"scep.certificates.dev/transaction-id":     "5f1d7c0a9e3b4d2c8a6f1e0b7d9c3a5e",
		"scep.certificates.dev/signer-certificate": "MIIB",
		"scep.certificates.dev/failed-attempts":    "-100",
		"scep.certificates.dev/next-attempt":       "2000-01-01T00:00:00Z",
		"scep.certificates.dev/pending-since":      "2000-01-01T00:00:00Z",
	}
}

// otherTeams is a CSR for a name of namespace victim: what the profiles of
// this class never allow a tenant request.
func otherTeams() scep.CSRTemplate {
	return scep.CSRTemplate{Subject: pkix.Name{CommonName: "web." + victim}, DNSNames: []string{"web." + victim + ".svc." + clusterDomain}}
}

// fits is a CSR the profiles of this class allow from tenant.
func fits(name string) scep.CSRTemplate {
	return scep.CSRTemplate{Subject: pkix.Name{CommonName: name + "." + tenant}, DNSNames: []string{name + "." + tenant + ".svc." + clusterDomain}}
}

// TestForgedState: state a tenant writes on a request (forged, copied from
// another request, or the annotations of before sealed state), directly or
// through a Certificate whose annotations cert-manager copies, decides
// nothing: the policy is checked on every call, and a state that is not
// the operator's for this very request is ignored (finding 1).
func TestForgedState(t *testing.T) {
	passSrv := scepserver.Start(t, scepserver.Behavior{})
	challengeSrv := scepserver.Start(t, scepserver.Behavior{Challenge: stateChallenge})
	pendingSrv := scepserver.Start(t, scepserver.Behavior{PendingForever: true})
	pass := clusterProfile(t, "attack-state-pass", passSrv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.SubjectAltNames = []scepv1alpha1.SubjectAltName{{Type: scepv1alpha1.SANTypeDNSName, Value: "*.%namespace%.svc.%domainname%"}}
	})
	rebuild := clusterProfile(t, "attack-state-rebuild", challengeSrv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.CSRMode = scepv1alpha1.CSRModeRebuild
		s.Challenge = staticChallenge(t, "attack-state-challenge", stateChallenge)
		s.AllowAnySubjectAltNames = true
	})
	// A server that answers PENDING, polled once an hour: the sealed
	// state of its requests stays on them for the test.
	pending := clusterProfile(t, "attack-state-pending", pendingSrv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.RetryInterval = &metav1.Duration{Duration: time.Hour}
		s.MaxRetryInterval = &metav1.Duration{Duration: time.Hour}
		s.AllowAnySubjectAltNames = true
	})
	refusedSubject := verdict{refused: []string{signer.ReasonPolicyViolation}, says: []string{"spec.subject", "web." + victim}}
	carries := func(key, value string) func(*testing.T, *cmapi.CertificateRequest, []tally) {
		return func(t *testing.T, cr *cmapi.CertificateRequest, _ []tally) {
			if cr.Annotations[key] != value {
				t.Errorf("the request does not carry %s=%q (cert-manager did not copy it): the row tested nothing", key, value)
			}
		}
	}

	runRequestRows(t, []*scepserver.Server{passSrv, challengeSrv, pendingSrv}, []requestRow{
		{
			name: "control: a hand-made request that fits, without state, is issued",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return handMade(t, "state-control", pass, csrPEM(t, newKey(t), fits("state-control")), nil)
			},
			want: verdict{issued: true},
		},
		{
			name: "forged sealed state on a hand-made request for another namespace's name",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return handMade(t, "state-forged", pass, csrPEM(t, newKey(t), otherTeams()), func(cr *cmapi.CertificateRequest) {
					cr.Annotations = map[string]string{signer.AnnotationState: forgedState(t)}
				})
			},
			want: refusedSubject,
		},
		{
			name: "forged sealed state on a Certificate, copied to its request by cert-manager",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				crt := certificate(t, attacker(t), tenant, "state-forged-crt", pass, func(c *cmapi.Certificate) {
					c.Annotations = map[string]string{signer.AnnotationState: forgedState(t)}
					c.Spec.CommonName, c.Spec.DNSNames = "web."+victim, []string{"web." + victim + ".svc." + clusterDomain}
				})
				return requestOf(t, crt)
			},
			want: refusedSubject,
			then: func(t *testing.T, cr *cmapi.CertificateRequest, _ []tally) {
				if _, ok := signer.StateOf(cr); !ok {
					t.Error("the request carries no state annotation (cert-manager did not copy it): the row tested nothing")
				}
			},
		},
		{
			name: "legacy transaction-id, signer-certificate and failed-attempts annotations on a hand-made request",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return handMade(t, "state-legacy", pass, csrPEM(t, newKey(t), otherTeams()), func(cr *cmapi.CertificateRequest) {
					cr.Annotations = legacyState()
				})
			},
			want: refusedSubject,
		},
		{
			name: "legacy annotations on a Certificate for the Static-challenge Rebuild profile (the challenge is never spent on it)",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				crt := certificate(t, attacker(t), tenant, "state-legacy-crt", rebuild, func(c *cmapi.Certificate) {
					c.Annotations = legacyState()
					c.Spec.CommonName = "web." + victim
				})
				return requestOf(t, crt)
			},
			want: refusedSubject,
			then: carries("scep.certificates.dev/transaction-id", legacyState()["scep.certificates.dev/transaction-id"]),
		},
		{
			name: "control: a Certificate that fits the Static-challenge Rebuild profile is issued, with the challenge",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return requestOf(t, certificate(t, attacker(t), tenant, "state-rebuild-control", rebuild, nil))
			},
			want: verdict{issued: true},
			then: func(t *testing.T, cr *cmapi.CertificateRequest, since []tally) {
				expectChallenge(t, challengeSrv, cr, since[1], stateChallenge)
			},
		},
		{
			name: "forged PENDING state on a request that fits is ignored: its own PKCSReq is sent at once",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return handMade(t, "state-forged-fits", pass, csrPEM(t, newKey(t), fits("state-forged-fits")), func(cr *cmapi.CertificateRequest) {
					cr.Annotations = map[string]string{signer.AnnotationState: forgedState(t)}
				})
			},
			want: verdict{issued: true, stateIgnored: true},
		},
		{
			name: "sealed state copied from another pending request is ignored: no CertPoll for the other's transaction",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				source := handMade(t, "state-source", pending, csrPEM(t, newKey(t), fits("state-source")), nil)
				sealed := ""
				eventually(t, finishTimeout, "the operator's sealed PENDING state on "+source.Name, func() (bool, string) {
					if err := admin(t).Get(t.Context(), client.ObjectKeyFromObject(source), source); err != nil {
						return false, err.Error()
					}
					st, _ := signer.StateOf(source)
					sealed = source.Annotations[signer.AnnotationState]
					return st.Pending, "state: " + sealed
				})
				sourceTx, _ := signer.TransactionIDOf(source)
				polls := func() int {
					n := 0
					for _, m := range pendingSrv.PKIRequests() {
						if m.MessageType == "CertPoll" && m.TransactionID == string(sourceTx) {
							n++
						}
					}
					return n
				}
				before := polls()
				t.Cleanup(func() {
					if after := polls(); after != before {
						t.Errorf("%d CertPoll(s) for the copied state's transaction %s", after-before, sourceTx)
					}
				})
				return handMade(t, "state-copied", pending, csrPEM(t, newKey(t), fits("state-copied")), func(cr *cmapi.CertificateRequest) {
					cr.Annotations = map[string]string{signer.AnnotationState: sealed}
				})
			},
			want: verdict{stateIgnored: true},
		},
	})
}
