package signer

import (
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKubeCSR: a CertificateSigningRequest is read as the signer needs it:
// finished once it has a certificate or a Failed condition, its state
// sealed and opened like a CertificateRequest's, its state writes filtered,
// and its variables without what a cluster-scoped object cannot have.
func TestKubeCSR(t *testing.T) {
	base := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "c", UID: "uid-c", ResourceVersion: "1"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Username: "alice", Request: []byte("x")},
	}
	r := kubeCSR{base}
	if _, done, _ := r.finished(); done {
		t.Error("a new CSR reads as finished")
	}
	issued := base.DeepCopy()
	issued.Status.Certificate = []byte("cert")
	if b, done, err := (kubeCSR{issued}).finished(); !done || err != nil || string(b.ChainPEM) != "cert" {
		t.Errorf("issued CSR: %v %v %v", b, done, err)
	}
	failed := base.DeepCopy()
	failed.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue, Message: failedPrefixCSR + "refused"}}
	if _, done, err := (kubeCSR{failed}).finished(); !done || err == nil || err.Error() != "refused" {
		t.Errorf("failed CSR: %v %v", done, err)
	}

	s := &Signer{StateKey: []byte("0123456789abcdef0123456789abcdef")}
	withState := base.DeepCopy()
	withState.ResourceVersion = "2"
	s.write(withState, State{Pending: true})
	if st, err := s.open(withState); err != nil || !st.Pending {
		t.Errorf("round trip on a CSR: %+v %v", st, err)
	}
	copied := withState.DeepCopy()
	copied.UID = "uid-other"
	if _, err := s.open(copied); err == nil {
		t.Error("a state copied to another CSR was accepted")
	}
	if !OnlyStateChanged(base, withState) {
		t.Error("a state write on a CSR is not filtered")
	}
	approved := withState.DeepCopy()
	approved.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	if OnlyStateChanged(base, approved) {
		t.Error("an approval was filtered")
	}
	if !s.needsFreshRead(kubeCSR{withState}) || s.needsFreshRead(r) {
		t.Error("needsFreshRead on CSRs")
	}

	vars := r.variables("cluster.local")
	if vars["username"] != "alice" || vars["requestname"] != "c" || vars["namespace"] != "" || vars["certificatename"] != "" {
		t.Errorf("variables = %v", vars)
	}
	if r.id() != "/c" {
		t.Errorf("id = %q", r.id())
	}
}
