package controllers_test

import (
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scep-operator/scep-operator/controllers"
)

func TestTrimForeignRequest(t *testing.T) {
	mk := func(group string) *cmapi.CertificateRequest {
		return &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "x", Annotations: map[string]string{"a": "b"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}},
			Spec:       cmapi.CertificateRequestSpec{IssuerRef: cmmeta.IssuerReference{Group: group}, Request: []byte("csr")},
			Status:     cmapi.CertificateRequestStatus{Certificate: []byte("crt"), CA: []byte("ca")},
		}
	}
	ours, _ := controllers.TrimForeignRequest(mk("scep.certificates.dev"))
	o := ours.(*cmapi.CertificateRequest)
	if string(o.Spec.Request) != "csr" || string(o.Status.Certificate) != "crt" || o.Annotations["a"] != "b" || o.ManagedFields != nil {
		t.Errorf("our request was trimmed: %+v", o)
	}
	foreign, _ := controllers.TrimForeignRequest(mk("cert-manager.io"))
	f := foreign.(*cmapi.CertificateRequest)
	if f.Spec.Request != nil || f.Status.Certificate != nil || f.Status.CA != nil || f.Annotations != nil || f.ManagedFields != nil || f.Spec.IssuerRef.Group != "cert-manager.io" {
		t.Errorf("a foreign request kept its bulk: %+v", f)
	}
}
