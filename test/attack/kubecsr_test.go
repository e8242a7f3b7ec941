package attack

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	experimentalapi "github.com/cert-manager/cert-manager/pkg/apis/experimental/v1alpha1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestKubernetesCSRs: the attacker, allowed to create and edit Kubernetes
// CertificateSigningRequests (cluster-scoped: no namespace boundary, any
// signerName), and an approver that approves whatever is asked. Each row
// counts what reached the SCEP server: an unapproved CSR is never sent; a
// CSR naming a SCEPProfile without "reference" on it, naming a
// ClusterSCEPProfile whose namespaceSelector the CSR cannot meet, or
// asking for what the profile does not allow is refused with nothing sent;
// a forged state annotation is ignored; csrMode Rebuild does not read a key
// Secret the attacker may not read.
func TestKubernetesCSRs(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{})
	c := admin(t)
	csrUser := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "attack-csr-user"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get", "list", "watch", "update", "patch"}},
	}}
	create(t, c, csrUser)
	create(t, c, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "attack-csr-user"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: csrUser.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: attackerName}}})
	open := clusterProfile(t, "attack-kcsr-open", srv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.NamespaceSelector = nil
		s.Subject = "CN=%username%"
	})
	selected := clusterProfile(t, "attack-kcsr-selected", srv, nil)
	rebuild := clusterProfile(t, "attack-kcsr-rebuild", srv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.NamespaceSelector = nil
		s.Subject = "CN=%username%"
		s.CSRMode = scepv1alpha1.CSRModeRebuild
	})
	teamProfile := teamSCEPProfile(t, "team-kcsr", srv)

	// A sealed state of another CSR, for the forgery row.
	sealedElsewhere := ""
	// mine fits the open profiles: CN=%username%.
	mine := scep.CSRTemplate{Subject: pkix.Name{CommonName: attackerName}}

	type row struct {
		name     string
		p        scepv1alpha1.Profile
		tmpl     scep.CSRTemplate
		annotate func() map[string]string
		// refused is the reason of the SCEPPolicy condition; empty: issued.
		refused, says string
		// stateIgnored: a SCEPStateIgnored Event, then one PKCSReq.
		stateIgnored bool
	}
	rows := []row{
		{name: "issued when it fits", p: open, tmpl: mine},
		{name: "a SCEPProfile without reference", p: teamProfile, tmpl: mine,
			refused: signer.ReasonReferenceDenied, says: "may not reference SCEPProfile " + tenant + "/team-kcsr"},
		{name: "a ClusterSCEPProfile's namespaceSelector", p: selected, tmpl: scep.CSRTemplate{Subject: pkix.Name{CommonName: "x." + tenant}},
			refused: signer.ReasonNamespaceNotAllowed, says: "has no namespace"},
		{name: "outside the profile's policy", p: open, tmpl: scep.CSRTemplate{Subject: pkix.Name{CommonName: "admin@corp.example"}},
			refused: signer.ReasonPolicyViolation, says: "spec.subject"},
		{name: "isCA by cert-manager's annotation", p: open, tmpl: mine,
			annotate: func() map[string]string {
				return map[string]string{experimentalapi.CertificateSigningRequestIsCAAnnotationKey: "true"}
			},
			refused: signer.ReasonPolicyViolation, says: "spec.isCA"},
		{name: "forged state: PENDING, copied from another CSR", p: open, tmpl: mine,
			annotate: func() map[string]string { return map[string]string{signer.AnnotationState: sealedElsewhere} }, stateIgnored: true},
		{name: "Rebuild naming the operator's own state-key Secret", p: rebuild, tmpl: mine,
			annotate: func() map[string]string {
				return map[string]string{experimentalapi.CertificateSigningRequestPrivateKeyAnnotationKey: controllers.DefaultStateKeySecretName}
			},
			refused: signer.ReasonPrivateKeyRefused, says: "may not get Secret " + clusterResourceNamespace + "/" + controllers.DefaultStateKeySecretName},
	}

	// A CSR answered PENDING by another server, whose sealed state the
	// forgery row copies.
	pending := scepserver.Start(t, scepserver.Behavior{PendingForever: true})
	pendingProfile := clusterProfile(t, "attack-kcsr-pending", pending, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.NamespaceSelector = nil
		s.Subject = "CN=%username%"
	})
	source := makeCSR(t, attacker(t), "attack-kcsr-source", pendingProfile, csrPEM(t, newKey(t), mine), nil)
	approveCSR(t, source)
	eventually(t, finishTimeout, "the source CSR's sealed PENDING state", func() (bool, string) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(source), source); err != nil {
			return false, err.Error()
		}
		sealedElsewhere = source.Annotations[signer.AnnotationState]
		st, _ := signer.StateOf(source)
		return st.Pending, fmt.Sprintf("state %+v", st)
	})

	// Made first, checked after every other row was served.
	unapproved := makeCSR(t, attacker(t), "attack-kcsr-unapproved", open, csrPEM(t, newKey(t), mine), nil)
	for i, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			before := tallyOf(srv)
			var ann map[string]string
			if r.annotate != nil {
				ann = r.annotate()
			}
			key := newKey(t)
			csr := makeCSR(t, attacker(t), fmt.Sprintf("attack-kcsr-%d", i), r.p, csrPEM(t, key, r.tmpl), ann)
			approveCSR(t, csr)
			got := waitCSRFinished(t, csr)
			after := tallyOf(srv)
			switch {
			case r.refused != "":
				f := signer.CSRFailed(got)
				if f == nil || !strings.Contains(f.Message, r.says) {
					t.Fatalf("want refused (%s, %q); got certificate=%v failed=%+v", r.refused, r.says, len(got.Status.Certificate) > 0, f)
				}
				if !hasPolicyReason(got, r.refused) {
					t.Errorf("no %s condition with reason %s: %+v", signer.ConditionPolicy, r.refused, got.Status.Conditions)
				}
				if after != before {
					t.Errorf("the server received something: %+v -> %+v", before, after)
				}
			default:
				if len(got.Status.Certificate) == 0 {
					t.Fatalf("not issued: %+v", signer.CSRFailed(got))
				}
				if after.pkcsReq != before.pkcsReq+1 {
					t.Errorf("the server saw %d PKCSReq for the row, want 1", after.pkcsReq-before.pkcsReq)
				}
				if r.stateIgnored {
					waitEvent(t, "CertificateSigningRequest", got, signer.EventStateIgnored, signer.AnnotationState)
				}
			}
		})
	}
	t.Run("unapproved is never sent", func(t *testing.T) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(unapproved), unapproved); err != nil {
			t.Fatal(err)
		}
		if len(unapproved.Status.Certificate) > 0 || signer.CSRFailed(unapproved) != nil || unapproved.Annotations[signer.AnnotationState] != "" {
			t.Fatalf("an unapproved CSR was acted on: %+v", unapproved.Status)
		}
		pub := csrKeyOf(t, unapproved)
		for _, m := range srv.PKIRequests() {
			if m.CSR != nil && pub.Equal(m.CSR.PublicKey) {
				t.Fatalf("an unapproved CSR's key reached the server in a %s", m.MessageType)
			}
		}
	})
}

// teamSCEPProfile is a SCEPProfile the admin keeps in tenant for srv
// (pinned, any subject), Ready. The attacker works in tenant but holds no
// "reference" on its signers: a Role the namespace's admin did not grant.
// (The victim namespace would do as well, but the suite's operator may
// keep profile Secrets in tenant only.)
func teamSCEPProfile(t *testing.T, name string, srv *scepserver.Server) *scepv1alpha1.SCEPProfile {
	t.Helper()
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name},
		Spec:       scepv1alpha1.SCEPProfileSpec{URL: srv.URL, CAFingerprint: fingerprint(srv), AllowAnySubject: true},
	}
	t.Cleanup(func() { removeSigner(t, p) })
	create(t, admin(t), p)
	waitProfile(t, p, metav1.ConditionTrue)
	return p
}

// makeCSR creates, as c's user, a CertificateSigningRequest naming p.
func makeCSR(t *testing.T, c client.Client, name string, p scepv1alpha1.Profile, csr []byte, ann map[string]string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	obj := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec: certificatesv1.CertificateSigningRequestSpec{SignerName: controllers.SignerName(p), Request: csr,
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment}},
	}
	create(t, c, obj)
	return obj
}

// approveCSR approves csr as an approver that approves everything.
func approveCSR(t *testing.T, csr *certificatesv1.CertificateSigningRequest) {
	t.Helper()
	c := admin(t)
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(csr), csr); err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Attack", Message: "approved blindly"})
	if err := c.SubResource("approval").Update(t.Context(), csr); err != nil {
		t.Fatal(err)
	}
}

// waitCSRFinished waits until csr has a certificate or has failed.
func waitCSRFinished(t *testing.T, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	got := &certificatesv1.CertificateSigningRequest{}
	eventually(t, finishTimeout, "CertificateSigningRequest "+csr.Name+" to finish", func() (bool, string) {
		if err := admin(t).Get(t.Context(), client.ObjectKeyFromObject(csr), got); err != nil {
			return false, err.Error()
		}
		return len(got.Status.Certificate) > 0 || signer.CSRFailed(got) != nil, fmt.Sprintf("conditions %+v", got.Status.Conditions)
	})
	return got
}

// hasPolicyReason reports whether csr has the SCEPPolicy condition with reason.
func hasPolicyReason(csr *certificatesv1.CertificateSigningRequest, reason string) bool {
	for _, c := range csr.Status.Conditions {
		if string(c.Type) == signer.ConditionPolicy && c.Reason == reason {
			return true
		}
	}
	return false
}

// csrKeyOf is the public key of csr's PKCS#10 request.
func csrKeyOf(t *testing.T, csr *certificatesv1.CertificateSigningRequest) interface {
	Equal(x crypto.PublicKey) bool
} {
	t.Helper()
	b, _ := pem.Decode(csr.Spec.Request)
	if b == nil {
		t.Fatal("no PEM request")
	}
	req, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := req.PublicKey.(interface{ Equal(x crypto.PublicKey) bool })
	if !ok {
		t.Fatalf("a %T key", req.PublicKey)
	}
	return pub
}
