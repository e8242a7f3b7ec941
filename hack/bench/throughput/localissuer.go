package main

import (
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

// localIssuerGroup is the ceiling issuer's own API group, apart from the
// operator's.
var localIssuerGroup = schema.GroupVersion{Group: "bench.scep-operator.dev", Version: "v1alpha1"}

// LocalIssuer is the ceiling's issuer resource: nothing to configure; the
// ceiling process holds its CA key in memory.
type LocalIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Status is issuer-lib's Ready condition.
	Status issuerapi.IssuerStatus `json:"status,omitzero"`
}

// GetConditions is issuer-lib's view of the status.
func (i *LocalIssuer) GetConditions() []metav1.Condition { return i.Status.Conditions }

// GetIssuerTypeIdentifier names the type for Kubernetes CSRs (unused here).
func (i *LocalIssuer) GetIssuerTypeIdentifier() string {
	return "localissuers." + localIssuerGroup.Group
}

// DeepCopyObject copies the issuer.
func (i *LocalIssuer) DeepCopyObject() runtime.Object {
	out := &LocalIssuer{TypeMeta: i.TypeMeta}
	i.DeepCopyInto(&out.ObjectMeta)
	i.Status.DeepCopyInto(&out.Status)
	return out
}

var _ issuerapi.Issuer = &LocalIssuer{}

// LocalIssuerList is a list of LocalIssuers.
type LocalIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the issuers.
	Items []LocalIssuer `json:"items"`
}

// DeepCopyObject copies the list.
func (l *LocalIssuerList) DeepCopyObject() runtime.Object {
	out := &LocalIssuerList{TypeMeta: l.TypeMeta}
	l.DeepCopyInto(&out.ListMeta)
	for i := range l.Items {
		out.Items = append(out.Items, *l.Items[i].DeepCopyObject().(*LocalIssuer))
	}
	return out
}

func addLocalIssuer(s *runtime.Scheme) error {
	s.AddKnownTypes(localIssuerGroup, &LocalIssuer{}, &LocalIssuerList{})
	metav1.AddToGroupVersion(s, localIssuerGroup)
	return nil
}

// localIssuerCRD is LocalIssuer's CRD, made here rather than generated: the
// type lives only in this program.
func localIssuerCRD() *apiextensionsv1.CustomResourceDefinition {
	open := apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "localissuers." + localIssuerGroup.Group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: localIssuerGroup.Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "localissuers", Singular: "localissuer", Kind: "LocalIssuer", ListKind: "LocalIssuerList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: localIssuerGroup.Version, Served: true, Storage: true,
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type:       "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{"spec": open, "status": open},
				}},
			}},
		},
	}
}
