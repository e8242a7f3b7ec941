/*
Copyright 2026 The scep-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

import (
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SCEPProfile is a namespaced SCEP issuer: Certificates in its namespace name
// it in issuerRef (group scep.certificates.dev, kind SCEPProfile). Its
// Secrets live in its namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=scepprofile;sp,categories=cert-manager
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="CA Expiry",type=string,JSONPath=`.status.caExpiry`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="!has(self.spec.namespaceSelector)",message="spec.namespaceSelector is for ClusterSCEPProfile; a SCEPProfile serves only its own namespace"
type SCEPProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SCEPProfileSpec   `json:"spec"`
	Status SCEPProfileStatus `json:"status,omitempty"`
}

// SCEPProfileList is a list of SCEPProfile.
// +kubebuilder:object:root=true
type SCEPProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SCEPProfile `json:"items"`
}

// ClusterSCEPProfile is a cluster-wide SCEP issuer: Certificates in any
// namespace name it in issuerRef (kind ClusterSCEPProfile). Its Secrets live
// in the operator's cluster resource namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=clusterscepprofile;csp,categories=cert-manager
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="CA Expiry",type=string,JSONPath=`.status.caExpiry`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterSCEPProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SCEPProfileSpec   `json:"spec"`
	Status SCEPProfileStatus `json:"status,omitempty"`
}

// ClusterSCEPProfileList is a list of ClusterSCEPProfile.
// +kubebuilder:object:root=true
type ClusterSCEPProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterSCEPProfile `json:"items"`
}

// Profile is what the controllers need of either kind.
// +kubebuilder:object:generate=false
type Profile interface {
	issuerapi.Issuer
	// GetSpec returns the shared spec.
	GetSpec() *SCEPProfileSpec
	// GetStatus returns the shared status, for the controller to fill.
	GetStatus() *SCEPProfileStatus
}

// The compile-time checks that both kinds are issuer-lib issuers.
var (
	_ Profile = &SCEPProfile{}
	_ Profile = &ClusterSCEPProfile{}
)

// GetConditions returns the status conditions; issuer-lib reads Ready there.
func (p *SCEPProfile) GetConditions() []metav1.Condition { return p.Status.Conditions }

// GetIssuerTypeIdentifier is the signer name prefix for Kubernetes CSRs and
// cert-manager's approver: "scepprofiles.scep.certificates.dev".
func (p *SCEPProfile) GetIssuerTypeIdentifier() string { return "scepprofiles.scep.certificates.dev" }

// GetSpec returns the spec.
func (p *SCEPProfile) GetSpec() *SCEPProfileSpec { return &p.Spec }

// GetStatus returns the status.
func (p *SCEPProfile) GetStatus() *SCEPProfileStatus { return &p.Status }

// GetConditions returns the status conditions; issuer-lib reads Ready there.
func (p *ClusterSCEPProfile) GetConditions() []metav1.Condition { return p.Status.Conditions }

// GetIssuerTypeIdentifier is the signer name prefix for Kubernetes CSRs and
// cert-manager's approver: "clusterscepprofiles.scep.certificates.dev".
func (p *ClusterSCEPProfile) GetIssuerTypeIdentifier() string {
	return "clusterscepprofiles.scep.certificates.dev"
}

// GetSpec returns the spec.
func (p *ClusterSCEPProfile) GetSpec() *SCEPProfileSpec { return &p.Spec }

// GetStatus returns the status.
func (p *ClusterSCEPProfile) GetStatus() *SCEPProfileStatus { return &p.Status }

func init() {
	SchemeBuilder.Register(&SCEPProfile{}, &SCEPProfileList{}, &ClusterSCEPProfile{}, &ClusterSCEPProfileList{})
}
