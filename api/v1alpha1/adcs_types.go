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

// The types of AD CS practice: Kerberos to NDES's admin page, the crypto
// floor.

// KerberosAuth is how the operator gets a Kerberos ticket for NDES's admin
// page: the realm and its KDCs, or a krb5.conf, and the page's service
// principal. The account (username, and password or keytab) is in the
// dynamic challenge's credentials Secret.
// +kubebuilder:validation:XValidation:rule="(has(self.kdcs) && size(self.kdcs) > 0) || has(self.krb5ConfConfigMapRef)",message="kerberos needs kdcs (the realm's domain controllers, host or host:port) or krb5ConfConfigMapRef (a krb5.conf naming them)"
type KerberosAuth struct {
	// Realm is the Kerberos realm, e.g. CORP.EXAMPLE (the AD domain's DNS
	// name in capitals). Unset, the realm of a user@REALM username, else
	// the krb5.conf's default_realm.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`
	Realm string `json:"realm,omitempty"`

	// KDCs are the realm's KDCs (for AD, domain controllers), host or
	// host:port (port 88 by default), tried in order over TCP. They are
	// never looked up in DNS, and the operator's egress policy applies to
	// them as to the admin URL.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=261
	// +kubebuilder:validation:items:Pattern=`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?$`
	KDCs []string `json:"kdcs,omitempty"`

	// Krb5ConfConfigMapRef names a ConfigMap key holding a krb5.conf (key
	// default "krb5.conf") for realms and KDCs; kdcs, when set, replace the
	// realm's KDCs in it. For a ClusterSCEPProfile the ConfigMap lives in
	// the operator's cluster resource namespace.
	// +optional
	Krb5ConfConfigMapRef *ConfigMapKeySelector `json:"krb5ConfConfigMapRef,omitempty"`

	// ServicePrincipalName is the admin page's SPN, e.g.
	// HTTP/ndes.corp.example. Unset, HTTP/<host of the admin url>, as
	// Windows derives it (register it with setspn on the account IIS runs
	// the page as).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9-]*/[^\s/@]+$`
	ServicePrincipalName string `json:"servicePrincipalName,omitempty"`

	// AllowNTLMFallback lets the operator use NTLM (with the Secret's
	// username and password) where Kerberos cannot be tried: IIS offers
	// no Negotiate, no KDC answers, or the KDC does not know the SPN. A
	// refusal of the credentials by the KDC never falls back. Off by
	// default: NTLM is what Microsoft's hardening turns off.
	// +optional
	AllowNTLMFallback bool `json:"allowNTLMFallback,omitempty"`
}

// ConfigMapKeySelector names one key of a ConfigMap.
type ConfigMapKeySelector struct {
	// Name of the ConfigMap.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the ConfigMap; each reference documents its default.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// CryptoFloor is the weakest algorithms a profile lets the operator use.
type CryptoFloor struct {
	// ContentEncryption is the weakest cipher the request's envelope may
	// use: DES (single DES, 56-bit: only for servers that offer nothing
	// else, explicitly), DES3 (triple DES, the default) or AES.
	// +optional
	// +kubebuilder:default=DES3
	// +kubebuilder:validation:Enum=DES;DES3;AES
	ContentEncryption string `json:"contentEncryption,omitempty"`

	// Digest is the weakest digest the request's signature may use: SHA1
	// (the default; used only when the server announces nothing better),
	// SHA256 or SHA512.
	// +optional
	// +kubebuilder:default=SHA1
	// +kubebuilder:validation:Enum=SHA1;SHA256;SHA512
	Digest string `json:"digest,omitempty"`
}
