package controllers_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	experimentalapi "github.com/cert-manager/cert-manager/pkg/apis/experimental/v1alpha1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// actingAs is a client of the shared API server that impersonates user.
func actingAs(t *testing.T, user string) client.Client {
	t.Helper()
	e := apiServer(t)
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: e.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// grant binds a new role with rules to user: a ClusterRole and
// ClusterRoleBinding when ns is empty, else a Role and RoleBinding in ns.
func grant(t *testing.T, ns, name, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	c := apiServer(t).Client
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	var role, binding client.Object
	if ns == "" {
		role = &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
		binding = &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subjects,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}}
	} else {
		role = &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules}
		binding = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Subjects: subjects,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}}
	}
	for _, o := range []client.Object{role, binding} {
		if err := c.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), o) })
	}
	// The API server's RBAC authorizer reads roles and bindings through
	// its own informers: a request right after the create may still be
	// judged without them (TestCSRClusterProfile failed so once under a
	// CPU hog). Wait until the first rule is in force.
	r := rules[0]
	resourceName := ""
	if len(r.ResourceNames) > 0 {
		resourceName = r.ResourceNames[0]
	}
	eventually(t, 30*time.Second, "RBAC to grant "+user+" role "+name, func() (bool, string) {
		return subjectMay(t, user, r.APIGroups[0], r.Resources[0], r.Verbs[0], ns, resourceName), "not allowed yet"
	})
}

// csrCreator lets user create and read CertificateSigningRequests, as any
// workload that asks for certificates through certificates.k8s.io may.
func csrCreator(t *testing.T, ns, user string) client.Client {
	t.Helper()
	grant(t, "", ns+"-"+user+"-csr", user, rbacv1.PolicyRule{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get"}})
	return actingAs(t, user)
}

// subjectMay asks the API server whether user may do verb on resource
// (group certificates.k8s.io) named name.
func subjectMay(t *testing.T, user, group, resource, verb, ns, name string) bool {
	t.Helper()
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &authzv1.ResourceAttributes{
		Group: group, Resource: resource, Verb: verb, Namespace: ns, Name: name,
	}}}
	if err := apiServer(t).Client.Create(t.Context(), sar); err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

// kubeCSR creates, as c's user, a CertificateSigningRequest for signerName.
func kubeCSR(t *testing.T, c client.Client, name, signerName string, csr []byte, annotations map[string]string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	pastLeadSecond(t)
	obj := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			SignerName: signerName,
			Request:    csr,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth},
		},
	}
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = apiServer(t).Client.Delete(context.Background(), obj) })
	return obj
}

// decide approves or denies csr through the approval subresource, as c's
// user; the API server checks that user may "approve" the signerName.
func decide(t *testing.T, c client.Client, csr *certificatesv1.CertificateSigningRequest, approve bool) error {
	t.Helper()
	got := &certificatesv1.CertificateSigningRequest{}
	if err := apiServer(t).Client.Get(t.Context(), client.ObjectKeyFromObject(csr), got); err != nil {
		t.Fatal(err)
	}
	cond := certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Test", Message: "approved by the test"}
	if !approve {
		cond = certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: "Test", Message: "denied by the test"}
	}
	got.Status.Conditions = append(got.Status.Conditions, cond)
	return c.SubResource("approval").Update(t.Context(), got)
}

// waitCSR waits until csr has a certificate or the Failed condition.
func waitCSR(t *testing.T, csr *certificatesv1.CertificateSigningRequest, timeout time.Duration) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	got := &certificatesv1.CertificateSigningRequest{}
	eventually(t, timeout, "CertificateSigningRequest "+csr.Name+" to finish", func() (bool, string) {
		if err := apiServer(t).Client.Get(t.Context(), client.ObjectKeyFromObject(csr), got); err != nil {
			return false, err.Error()
		}
		if len(got.Status.Certificate) > 0 {
			return true, ""
		}
		if f := signer.CSRFailed(got); f != nil {
			return true, f.Message
		}
		return false, fmt.Sprintf("conditions %+v", got.Status.Conditions)
	})
	return got
}

// csrLeaf returns the issued certificate of csr after checking that it
// holds the CSR's key and chains to root.
func csrLeaf(t *testing.T, csr *certificatesv1.CertificateSigningRequest, root *x509.Certificate) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(csr.Status.Certificate)
	if b == nil {
		t.Fatalf("CSR %s has no certificate (conditions %+v)", csr.Name, csr.Status.Conditions)
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := pem.Decode(csr.Spec.Request)
	req, _ := x509.ParseCertificateRequest(rb.Bytes)
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(req.PublicKey) {
		t.Fatal("the certificate does not hold the CSR's key")
	}
	if err := leaf.CheckSignatureFrom(root); err != nil {
		t.Fatalf("the certificate was not issued by the SCEP CA: %v", err)
	}
	return leaf
}

// clusterProfileFor creates a ClusterSCEPProfile for url and waits for it
// to be Ready.
func clusterProfileFor(t *testing.T, name, url string, change func(*scepv1alpha1.SCEPProfileSpec)) *scepv1alpha1.ClusterSCEPProfile {
	t.Helper()
	c := apiServer(t).Client
	p := &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: scepv1alpha1.SCEPProfileSpec{URL: url}}
	if change != nil {
		change(&p.Spec)
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), p) })
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	return p
}

// TestCSRClusterProfile: a Kubernetes CSR naming a ClusterSCEPProfile is
// enrolled at MicroMDM once approved through the API by a user allowed to
// approve the signer (RBAC, as a SubjectAccessReview confirms); the
// requester cannot approve its own; unapproved and denied CSRs are never
// sent; %username% is the requester the API server recorded.
func TestCSRClusterProfile(t *testing.T) {
	ns := namespace(t)
	srv := micromdm.Start(t, micromdm.Options{})
	startManager(t)
	p := clusterProfileFor(t, ns+"-mdm", srv.URL, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.CAFingerprint = scep.FingerprintOf(srv.CA, crypto.SHA1).Hex()
		s.Subject = "CN=%username%"
	})
	signerName := controllers.SignerName(p)
	if signerName != "clusterscepprofiles.scep.certificates.dev/"+p.Name {
		t.Fatalf("signerName = %q", signerName)
	}

	requester, approverName := "alice-"+ns, "approver-"+ns
	alice := csrCreator(t, ns, requester)
	grant(t, "", ns+"-approver", approverName,
		rbacv1.PolicyRule{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get"}},
		rbacv1.PolicyRule{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests/approval"}, Verbs: []string{"update"}},
		rbacv1.PolicyRule{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, Verbs: []string{"approve"}, ResourceNames: []string{"clusterscepprofiles.scep.certificates.dev/*"}},
	)
	approver := actingAs(t, approverName)
	// The API server's CertificateApproval admission asks for "approve" on
	// the signerName or on its domain's wildcard; RBAC matches names
	// literally, so the approver holds the wildcard.
	mayApprove := func(user string) bool {
		return subjectMay(t, user, "certificates.k8s.io", "signers", "approve", "", signerName) ||
			subjectMay(t, user, "certificates.k8s.io", "signers", "approve", "", "clusterscepprofiles.scep.certificates.dev/*")
	}
	if !mayApprove(approverName) {
		t.Fatal("SubjectAccessReview: the approver may not approve the signer")
	}
	if mayApprove(requester) {
		t.Fatal("SubjectAccessReview: the requester may approve the signer")
	}

	csr := func(i int) []byte {
		return csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: requester}}, rsaKey(2048, i))
	}
	unapproved := kubeCSR(t, alice, ns+"-unapproved", signerName, csr(1), nil)
	denied := kubeCSR(t, alice, ns+"-denied", signerName, csr(2), nil)
	if err := decide(t, approver, denied, false); err != nil {
		t.Fatal(err)
	}
	web := kubeCSR(t, alice, ns+"-web", signerName, csr(0), nil)
	if err := decide(t, alice, web, true); !apierrors.IsForbidden(err) {
		t.Fatalf("the requester approving its own CSR: %v; want Forbidden", err)
	}
	if err := decide(t, approver, web, true); err != nil {
		t.Fatal(err)
	}
	got := waitCSR(t, web, 30*time.Second)
	if leaf := csrLeaf(t, got, srv.CA); leaf.Subject.CommonName != requester {
		t.Errorf("subject = %v", leaf.Subject)
	}
	if got.Spec.Username != requester {
		t.Errorf("spec.username = %q", got.Spec.Username)
	}
	if n := srv.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("the server saw %d PKCSReq, want 1 (only the approved CSR)", n)
	}
	c := apiServer(t).Client
	for _, r := range []*certificatesv1.CertificateSigningRequest{unapproved, denied} {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(r), r); err != nil {
			t.Fatal(err)
		}
		if len(r.Status.Certificate) > 0 || r.Annotations[signer.AnnotationState] != "" || signer.CSRFailed(r) != nil {
			t.Errorf("%s was acted on: %+v", r.Name, r.Status)
		}
	}
}

// TestCSRNamespacedProfileNeedsReference: a CSR may name a tenant's
// SCEPProfile only when its requester may "reference" it (a Role in the
// profile's namespace); without, the approved CSR fails with
// DeniedReference and nothing reaches the server.
func TestCSRNamespacedProfileNeedsReference(t *testing.T) {
	ns := namespace(t)
	srv := micromdm.Start(t, micromdm.Options{})
	startManager(t)
	c := apiServer(t).Client
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mdm"},
		Spec: scepv1alpha1.SCEPProfileSpec{URL: srv.URL, CAFingerprint: scep.FingerprintOf(srv.CA, crypto.SHA1).Hex(),
			AllowAnySubject: true, AllowAnySubjectAltNames: true},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	signerName := controllers.SignerName(p)
	if signerName != "scepprofiles.scep.certificates.dev/"+ns+".mdm" {
		t.Fatalf("signerName = %q", signerName)
	}

	stranger, member := "bob-"+ns, "carol-"+ns
	bob, carol := csrCreator(t, ns, stranger), csrCreator(t, ns, member)
	grant(t, ns, "csr-reference", member, rbacv1.PolicyRule{APIGroups: []string{scepv1alpha1.GroupVersion.Group}, Resources: []string{"signers"}, Verbs: []string{"reference"}, ResourceNames: []string{"mdm"}})

	refused := kubeCSR(t, bob, ns+"-bob", signerName, csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "bob"}}, rsaKey(2048, 1)), nil)
	if err := decide(t, c, refused, true); err != nil {
		t.Fatal(err)
	}
	got := waitCSR(t, refused, 30*time.Second)
	f := signer.CSRFailed(got)
	if f == nil || !strings.Contains(f.Message, "may not reference SCEPProfile "+ns+"/mdm") {
		t.Fatalf("Failed = %+v", f)
	}
	hasReason := false
	for _, cond := range got.Status.Conditions {
		hasReason = hasReason || (string(cond.Type) == signer.ConditionPolicy && cond.Reason == signer.ReasonReferenceDenied)
	}
	if !hasReason {
		t.Errorf("no %s condition with reason %s: %+v", signer.ConditionPolicy, signer.ReasonReferenceDenied, got.Status.Conditions)
	}
	if n := srv.Requests("PKIOperation"); n != 0 {
		t.Fatalf("a CSR whose requester may not reference the profile reached the server (%d PKIOperations)", n)
	}

	allowed := kubeCSR(t, carol, ns+"-carol", signerName, csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "carol"}}, rsaKey(2048, 2)), nil)
	if err := decide(t, c, allowed, true); err != nil {
		t.Fatal(err)
	}
	csrLeaf(t, waitCSR(t, allowed, 30*time.Second), srv.CA)
	if n := srv.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("the server saw %d PKCSReq, want 1", n)
	}
}

// TestCSRPendingSurvivesRestart: a CSR answered PENDING keeps its sealed
// state on its own annotations; a new manager resumes it with CertPoll and
// the server sees exactly one PKCSReq.
func TestCSRPendingSurvivesRestart(t *testing.T) {
	ns := namespace(t)
	srv := scepserver.Start(t, scepserver.Behavior{PendingForever: true})
	m := startManager(t)
	c := apiServer(t).Client
	p := clusterProfileFor(t, ns+"-pending", srv.URL, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.AllowAnySubject, s.AllowAnySubjectAltNames, s.RetryInterval = true, true, duration(time.Second)
	})
	csr := kubeCSR(t, c, ns+"-pending", controllers.SignerName(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "pending"}}, rsaKey(2048, 0)), nil)
	if err := decide(t, c, csr, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the CSR to be PENDING and polled", func() (bool, string) {
		got := &certificatesv1.CertificateSigningRequest{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(csr), got); err != nil {
			return false, err.Error()
		}
		st, _ := signer.StateOf(got)
		return st.Pending && srv.PKIMessages("CertPoll") >= 1, fmt.Sprintf("state %+v", st)
	})
	m.stop()
	polls := srv.PKIMessages("CertPoll")

	srv.Set(func(b *scepserver.Behavior) { b.PendingForever = false; b.Pending = 1 })
	startManager(t)
	csrLeaf(t, waitCSR(t, csr, 30*time.Second), srv.CA)
	if n := srv.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("the server saw %d PKCSReq, want exactly 1", n)
	}
	if srv.PKIMessages("CertPoll") <= polls {
		t.Error("the new manager did not poll")
	}
	txs := map[string]bool{}
	for _, r := range srv.PKIRequests() {
		txs[r.TransactionID] = true
	}
	if len(txs) != 1 {
		t.Errorf("%d transactionIDs, want 1", len(txs))
	}
}

// TestCSRRebuild: csrMode Rebuild reads the key Secret that cert-manager's
// annotation experimental.cert-manager.io/private-key-secret-name names, in
// the cluster resource namespace, only when the requester may get it: the
// owner's CSR is issued, another user's CSR naming the same Secret is
// refused before it is read and nothing reaches the server.
func TestCSRRebuild(t *testing.T) {
	ns := namespace(t)
	srv := scepserver.Start(t, scepserver.Behavior{})
	startManager(t)
	c := apiServer(t).Client
	p := clusterProfileFor(t, ns+"-rebuild", srv.URL, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.AllowAnySubject, s.AllowAnySubjectAltNames, s.CSRMode = true, true, scepv1alpha1.CSRModeRebuild
	})
	key := rsaKey(2048, 3)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: clusterResourceNamespace, Name: ns + "-key"},
		Data: map[string][]byte{corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}}
	if err := c.Create(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), secret) })
	owner, other := "dave-"+ns, "eve-"+ns
	dave, eve := csrCreator(t, ns, owner), csrCreator(t, ns, other)
	grant(t, clusterResourceNamespace, ns+"-key-reader", owner, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{secret.Name}})
	ann := map[string]string{experimentalapi.CertificateSigningRequestPrivateKeyAnnotationKey: secret.Name}

	stolen := kubeCSR(t, eve, ns+"-eve", controllers.SignerName(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "eve"}}, rsaKey(2048, 4)), ann)
	if err := decide(t, c, stolen, true); err != nil {
		t.Fatal(err)
	}
	f := signer.CSRFailed(waitCSR(t, stolen, 30*time.Second))
	if f == nil || !strings.Contains(f.Message, "may not get Secret "+clusterResourceNamespace+"/"+secret.Name) {
		t.Fatalf("Failed = %+v", f)
	}
	if n := srv.Requests("PKIOperation"); n != 0 {
		t.Fatalf("a CSR naming another user's key Secret reached the server (%d PKIOperations)", n)
	}

	own := kubeCSR(t, dave, ns+"-dave", controllers.SignerName(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "dave"}}, key), ann)
	if err := decide(t, c, own, true); err != nil {
		t.Fatal(err)
	}
	csrLeaf(t, waitCSR(t, own, 30*time.Second), srv.CA)
	if n := srv.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("the server saw %d PKCSReq, want 1", n)
	}
}

// TestTrimForeignCSR: the cache keeps what the operator serves and only
// the routing fields of other signers' CSRs (kubelets', other issuers').
func TestTrimForeignCSR(t *testing.T) {
	mk := func(signerName string) *certificatesv1.CertificateSigningRequest {
		return &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "x", Annotations: map[string]string{"a": "b"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}},
			Spec:       certificatesv1.CertificateSigningRequestSpec{SignerName: signerName, Request: []byte("csr")},
			Status:     certificatesv1.CertificateSigningRequestStatus{Certificate: []byte("crt")},
		}
	}
	for _, name := range []string{"clusterscepprofiles.scep.certificates.dev/corp", "scepprofiles.scep.certificates.dev/team.mdm"} {
		got, _ := controllers.TrimForeignCSR(mk(name))
		o := got.(*certificatesv1.CertificateSigningRequest)
		if string(o.Spec.Request) != "csr" || string(o.Status.Certificate) != "crt" || o.Annotations["a"] != "b" || o.ManagedFields != nil {
			t.Errorf("%s was trimmed: %+v", name, o)
		}
		if !controllers.ForOurSigners(o) {
			t.Errorf("%s is not queued", name)
		}
	}
	for _, name := range []string{"kubernetes.io/kube-apiserver-client-kubelet", "issuers.cert-manager.io/ns.ca", "scep.certificates.dev.evil.example/x", "other.scep.certificates.dev/x"} {
		got, _ := controllers.TrimForeignCSR(mk(name))
		f := got.(*certificatesv1.CertificateSigningRequest)
		if f.Spec.Request != nil || f.Status.Certificate != nil || f.Annotations != nil || f.ManagedFields != nil || f.Spec.SignerName != name || f.Name != "x" {
			t.Errorf("%s kept its bulk: %+v", name, f)
		}
		if controllers.ForOurSigners(f) {
			t.Errorf("%s is queued", name)
		}
	}
}
