package controllers_test

import (
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
)

func TestTrimForeignRequest(t *testing.T) {
	mk := func(group string) *cmapi.CertificateRequest {
		return &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", UID: "uid", ResourceVersion: "7", Annotations: map[string]string{"a": "b"}, Labels: map[string]string{"l": "v"},
				OwnerReferences: []metav1.OwnerReference{{Name: "owner"}}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}},
			Spec: cmapi.CertificateRequestSpec{IssuerRef: cmmeta.IssuerReference{Group: group, Kind: "K", Name: "issuer"}, Request: []byte("csr"), Username: "alice", Usages: []cmapi.KeyUsage{cmapi.UsageDigitalSignature}},
			Status: cmapi.CertificateRequestStatus{Certificate: []byte("crt"), CA: []byte("ca"),
				Conditions: []cmapi.CertificateRequestCondition{{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue}}},
		}
	}
	ours, _ := controllers.TrimForeignRequest(mk("scep.certificates.dev"))
	o := ours.(*cmapi.CertificateRequest)
	if string(o.Spec.Request) != "csr" || string(o.Status.Certificate) != "crt" || o.Annotations["a"] != "b" || o.ManagedFields != nil {
		t.Errorf("our request was trimmed: %+v", o)
	}
	foreign, _ := controllers.TrimForeignRequest(mk("cert-manager.io"))
	f := foreign.(*cmapi.CertificateRequest)
	want := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", UID: "uid", ResourceVersion: "7"},
		Spec:       cmapi.CertificateRequestSpec{IssuerRef: cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "K", Name: "issuer"}},
	}
	if !equality.Semantic.DeepEqual(f, want) {
		t.Errorf("a foreign request kept more than its identity and issuerRef: %+v", f)
	}
}

// TestTrimFinishedRequest: a finished request of ours loses its CSR and
// certificates in the cache, and keeps what issuer-lib reads to ignore it;
// one still in progress is kept whole.
func TestTrimFinishedRequest(t *testing.T) {
	mk := func(status cmmeta.ConditionStatus, reason string) *cmapi.CertificateRequest {
		cr := &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", Annotations: map[string]string{"a": "b"}},
			Spec:       cmapi.CertificateRequestSpec{IssuerRef: cmmeta.IssuerReference{Group: "scep.certificates.dev", Kind: "SCEPProfile", Name: "p"}, Request: []byte("csr")},
			Status:     cmapi.CertificateRequestStatus{Certificate: []byte("crt"), CA: []byte("ca")},
		}
		if status != "" {
			cr.Status.Conditions = []cmapi.CertificateRequestCondition{
				{Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue},
				{Type: cmapi.CertificateRequestConditionReady, Status: status, Reason: reason},
			}
		}
		return cr
	}
	for _, tc := range []struct {
		name    string
		cr      *cmapi.CertificateRequest
		trimmed bool
	}{
		{"issued", mk(cmmeta.ConditionTrue, cmapi.CertificateRequestReasonIssued), true},
		{"failed", mk(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonFailed), true},
		{"denied", mk(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonDenied), true},
		{"pending", mk(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonPending), false},
		{"no Ready yet", mk("", ""), false},
		{"Ready unknown", mk(cmmeta.ConditionUnknown, ""), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conditions := tc.cr.Status.Conditions
			out, err := controllers.TrimRequest(tc.cr)
			if err != nil {
				t.Fatal(err)
			}
			cr := out.(*cmapi.CertificateRequest)
			kept := string(cr.Spec.Request) == "csr" && string(cr.Status.Certificate) == "crt" && string(cr.Status.CA) == "ca"
			gone := cr.Spec.Request == nil && cr.Status.Certificate == nil && cr.Status.CA == nil
			if tc.trimmed && !gone || !tc.trimmed && !kept {
				t.Errorf("CSR %q, certificate %q, CA %q: want trimmed %v", cr.Spec.Request, cr.Status.Certificate, cr.Status.CA, tc.trimmed)
			}
			if !equality.Semantic.DeepEqual(cr.Status.Conditions, conditions) || cr.Spec.IssuerRef.Name != "p" || cr.Annotations["a"] != "b" {
				t.Errorf("the transform changed what issuer-lib reads: %+v", cr)
			}
		})
	}
}

func TestForOurIssuers(t *testing.T) {
	for group, want := range map[string]bool{"scep.certificates.dev": true, "cert-manager.io": false, "": false, "scep.certificates.dev.evil": false} {
		cr := &cmapi.CertificateRequest{Spec: cmapi.CertificateRequestSpec{IssuerRef: cmmeta.IssuerReference{Group: group}}}
		if got := controllers.ForOurIssuers(cr); got != want {
			t.Errorf("issuerRef group %q: %v, want %v", group, got, want)
		}
	}
	if !controllers.ForOurIssuers(&scepv1alpha1.SCEPProfile{}) {
		t.Error("a profile event was filtered out")
	}
}
