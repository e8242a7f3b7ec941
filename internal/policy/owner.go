package policy

import (
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// CertificateOwner returns the Certificate that made cr: its controller
// ownerReference of kind Certificate in group cert-manager.io, whose name is
// a valid Kubernetes name. ok is false for a hand-made request.
func CertificateOwner(cr *cmapi.CertificateRequest) (name string, uid types.UID, ok bool) {
	ref := metav1.GetControllerOfNoCopy(cr)
	if ref == nil || ref.Kind != "Certificate" || ref.UID == "" {
		return "", "", false
	}
	if gv, err := schemaGroup(ref.APIVersion); err != nil || gv != cmapi.SchemeGroupVersion.Group {
		return "", "", false
	}
	if len(validation.IsDNS1123Subdomain(ref.Name)) > 0 {
		return "", "", false
	}
	return ref.Name, ref.UID, true
}

func schemaGroup(apiVersion string) (string, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	return gv.Group, err
}
