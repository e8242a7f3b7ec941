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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SCEPProfileSpec is an MDM SCEP profile: where the SCEP server is, how to
// trust it, what a request may ask for, how to prove the right to enroll,
// and how hard to try. SCEPProfile and ClusterSCEPProfile share it.
//
// +kubebuilder:validation:XValidation:rule="!has(self.challenge) || !has(self.challenge.type) || self.challenge.type == 'None' || (has(self.csrMode) && self.csrMode == 'Rebuild')",message="a challenge password travels inside the CSR, signed by the workload's key; csrMode Passthrough forwards cert-manager's CSR unchanged and cannot carry one: set csrMode: Rebuild (the operator then reads the Certificate's pending private key Secret)"
// +kubebuilder:validation:XValidation:rule="!has(self.keySize) || self.keySize != 1024 || (has(self.allowInsecureKeySize) && self.allowInsecureKeySize)",message="keySize 1024 is refused unless allowInsecureKeySize is true: 1024-bit RSA keys are breakable"
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || self.url.startsWith('https://')",message="tls is only used with an https:// url"
// +kubebuilder:validation:XValidation:rule="!has(self.retryInterval) || !has(self.maxRetryInterval) || !self.retryInterval.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || !self.maxRetryInterval.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || duration(self.retryInterval) <= duration(self.maxRetryInterval)",message="retryInterval must not be longer than maxRetryInterval"
// +kubebuilder:validation:XValidation:rule="(has(self.subject) && size(self.subject) > 0) != (has(self.allowAnySubject) && self.allowAnySubject)",message="set subject (a DN template every request's subject must match, e.g. CN=%certificatename%.%namespace%,O=Corp) or allowAnySubject: true to accept any subject, not both and not neither: an unconstrained subject must be explicit"
// +kubebuilder:validation:XValidation:rule="!(has(self.allowAnySubjectAltNames) && self.allowAnySubjectAltNames) || !has(self.subjectAltNames) || size(self.subjectAltNames) == 0",message="allowAnySubjectAltNames: true accepts any alternative name; it cannot be combined with subjectAltNames templates"
// +kubebuilder:validation:XValidation:rule="!has(self.certificateTemplate) || (has(self.csrMode) && self.csrMode == 'Rebuild')",message="certificateTemplate is written into the CSR, which only csrMode Rebuild builds; Passthrough forwards cert-manager's CSR unchanged: set csrMode: Rebuild, or remove certificateTemplate"
// +kubebuilder:validation:XValidation:rule="!self.url.startsWith('http://') || !has(self.challenge) || !has(self.challenge.type) || self.challenge.type == 'None' || (has(self.caFingerprint) && size(self.caFingerprint) > 0) || (has(self.caFingerprints) && size(self.caFingerprints) > 0) || (has(self.challenge.allowUnpinnedHTTP) && self.challenge.allowUnpinnedHTTP)",message="a challenge over an http:// url needs caFingerprint: without a pin the challenge password is encrypted to whoever answers GetCACert; set caFingerprint (or challenge.allowUnpinnedHTTP: true to accept that risk)"
// +kubebuilder:validation:XValidation:rule="!has(self.failoverURLs) || self.failoverURLs.all(u, u.startsWith('https://') == self.url.startsWith('https://'))",message="every failoverURLs entry must use the scheme of url (all http:// or all https://): tls, caFingerprint and the challenge rules apply to every server alike"
// +kubebuilder:validation:XValidation:rule="!has(self.failoverURLs) || !self.failoverURLs.exists(u, u == self.url)",message="failoverURLs must not repeat url"
type SCEPProfileSpec struct {
	// URL is the SCEP endpoint, e.g. http://ndes.corp.example/certsrv/mscep/mscep.dll
	// (NDES), https://ca.example/scep/provisioner (step-ca) or
	// http://scep.example/scep (MicroMDM).
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s/?#@]+(/[^\s]*)?$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z]+://[^/]*@')",message="url must not carry user:password@: credentials never go inline; the challenge password belongs in challenge.passwordSecretRef"
	URL string `json:"url"`

	// FailoverURLs are further SCEP servers of the same CA (several NDES
	// servers, say), tried in order after url when one is down or answers
	// HTTP 5xx. A transaction stays with the server that received its
	// PKCSReq: its CertPolls and retries go only there. caIdentifier,
	// caFingerprint(s), tls and the challenge apply to every server.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:items:MaxLength=2048
	// +kubebuilder:validation:items:Pattern=`^https?://[^\s/?#@]+(/[^\s]*)?$`
	// +kubebuilder:validation:items:XValidation:rule="!self.matches('^[a-zA-Z]+://[^/]*@')",message="failoverURLs must not carry user:password@: credentials never go inline"
	FailoverURLs []string `json:"failoverURLs,omitempty"`

	// CAIdentifier is sent as the message parameter of GetCACert, for
	// servers that host several CAs ("CA-IDENT").
	// +optional
	// +kubebuilder:validation:MaxLength=256
	CAIdentifier string `json:"caIdentifier,omitempty"`

	// CAFingerprint pins the CA: the SHA-256, SHA-1 or MD5 fingerprint
	// (thumbprint, hash value) of a certificate in the GetCACert answer, in
	// hex, with or without spaces or colons (NDES prints groups of eight),
	// optionally prefixed "sha256:", "sha1:" or "md5:" (which must name the
	// hash of that length). Nothing is sent to a server whose certificates
	// do not match. Without a pin, the first answer is trusted as it comes
	// (over https, the TLS trust applies).
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.lowerAscii().matches('^[ ]*((sha-?256|sha-?1|md5):)?[: ]*([0-9a-f][: ]*){32}(([0-9a-f][: ]*){8}(([0-9a-f][: ]*){24})?)?$')",message="caFingerprint must be 32 (MD5), 40 (SHA-1) or 64 (SHA-256) hex digits, optionally separated by spaces or colons and prefixed sha256:, sha1: or md5:"
	// +kubebuilder:validation:XValidation:rule="!self.lowerAscii().matches('^[ ]*(sha-?256|sha-?1|md5):') || self.lowerAscii().matches('^[ ]*(sha-?256:[: ]*([0-9a-f][: ]*){64}|sha-?1:[: ]*([0-9a-f][: ]*){40}|md5:[: ]*([0-9a-f][: ]*){32})$')",message="the caFingerprint prefix must name the hash its length is: sha256: takes 64 hex digits, sha1: takes 40, md5: takes 32"
	CAFingerprint string `json:"caFingerprint,omitempty"`

	// CAFingerprints are further pins, in the format of caFingerprint: a
	// GetCACert answer is trusted when any pin (caFingerprint or one of
	// these) matches one of its certificates. List the old and the new CA
	// during a rollover. Besides these, a CA certificate that the server
	// announced through GetNextCACert, signed by a certificate the pins
	// trust, is trusted while the pins stay as they are (see
	// status.caRollover).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:XValidation:rule="self.lowerAscii().matches('^[ ]*((sha-?256|sha-?1|md5):)?[: ]*([0-9a-f][: ]*){32}(([0-9a-f][: ]*){8}(([0-9a-f][: ]*){24})?)?$')",message="each caFingerprints entry must be 32 (MD5), 40 (SHA-1) or 64 (SHA-256) hex digits, optionally separated by spaces or colons and prefixed sha256:, sha1: or md5:"
	// +kubebuilder:validation:items:XValidation:rule="!self.lowerAscii().matches('^[ ]*(sha-?256|sha-?1|md5):') || self.lowerAscii().matches('^[ ]*(sha-?256:[: ]*([0-9a-f][: ]*){64}|sha-?1:[: ]*([0-9a-f][: ]*){40}|md5:[: ]*([0-9a-f][: ]*){32})$')",message="a caFingerprints prefix must name the hash its length is: sha256: takes 64 hex digits, sha1: takes 40, md5: takes 32"
	CAFingerprints []string `json:"caFingerprints,omitempty"`

	// TLS configures trust for an https URL.
	// +optional
	TLS *TLSConfig `json:"tls,omitempty"`

	// Subject is the subject the request's CSR must have, as a DN template,
	// e.g. "CN=%certificatename%.%namespace%,O=Corp". A "*" in an attribute
	// value matches any run of characters; a variable's value is always
	// matched literally. Variables are listed in the Variables section of
	// the docs. Either subject or allowAnySubject must be set.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.replace('%namespace%', '').replace('%certificatename%', '').replace('%requestname%', '').replace('%username%', '').replace('%email%', '').replace('%domainname%', '').replace('%devicename%', '').contains('%')",message="unknown %variable%: the known ones are %namespace%, %certificatename%, %requestname%, %username%, %email%, %domainname% and %devicename%"
	Subject string `json:"subject,omitempty"`

	// AllowAnySubject accepts any subject. It must be set explicitly when
	// subject is empty (the profile's status then shows a PolicyWarning).
	// +optional
	AllowAnySubject bool `json:"allowAnySubject,omitempty"`

	// SubjectAltNames are the alternative names a request may carry: each
	// of the CSR's names must match one entry of its type. An empty list
	// allows no alternative names, unless allowAnySubjectAltNames is true.
	// Other name types (IP addresses, directoryName, registeredID, otherNames
	// other than UPN) are always refused.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	SubjectAltNames []SubjectAltName `json:"subjectAltNames,omitempty"`

	// AllowAnySubjectAltNames accepts any RFC822Name, DNSName, URI and UPN
	// names (the profile's status then shows a PolicyWarning).
	// +optional
	AllowAnySubjectAltNames bool `json:"allowAnySubjectAltNames,omitempty"`

	// Variables constrains the values of variables a tenant chooses freely
	// (today %email%, from an annotation of the Certificate).
	// +optional
	Variables *VariableConstraints `json:"variables,omitempty"`

	// KeyUsage lists the key usages a request may ask for. Empty allows any
	// but CertSign and CRLSign, which are always refused (end-entity only).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	KeyUsage []KeyUsage `json:"keyUsage,omitempty"`

	// ExtendedKeyUsages lists the extended key usages a request may ask
	// for: names (ServerAuth, ClientAuth, CodeSigning, EmailProtection,
	// IPSECEndSystem, IPSECTunnel, IPSECUser, TimeStamping, OCSPSigning,
	// SmartcardLogon) or dotted OIDs. Empty means the request may carry no
	// extendedKeyUsage extension. anyExtendedKeyUsage is always refused.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^(ServerAuth|ClientAuth|CodeSigning|EmailProtection|IPSECEndSystem|IPSECTunnel|IPSECUser|TimeStamping|OCSPSigning|SmartcardLogon|[0-2](\.(0|[1-9][0-9]*))+)$`
	ExtendedKeyUsages []string `json:"extendedKeyUsages,omitempty"`

	// AllowedExtensions lists, as dotted OIDs, further CSR extensions a
	// request may carry besides those the profile's fields govern
	// (subjectAltName, keyUsage, extendedKeyUsage, basicConstraints without
	// CA, subjectKeyIdentifier). A request with any other extension, or
	// with basicConstraints CA:true, is refused.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[0-2](\.(0|[1-9][0-9]*))+$`
	// +kubebuilder:validation:XValidation:rule="!self.exists(o, o == '1.3.6.1.4.1.311.20.2' || o == '1.3.6.1.4.1.311.21.7')",message="the certificate template extensions (1.3.6.1.4.1.311.20.2, 1.3.6.1.4.1.311.21.7) cannot be allowed: a request must not choose its template; name it in certificateTemplate (csrMode Rebuild) instead"
	AllowedExtensions []string `json:"allowedExtensions,omitempty"`

	// KeySize is the RSA key size the request's key must have.
	// +optional
	// +kubebuilder:default=2048
	// +kubebuilder:validation:Enum=1024;2048;3072;4096
	KeySize int32 `json:"keySize,omitempty"`

	// AllowInsecureKeySize must be true for keySize 1024.
	// +optional
	AllowInsecureKeySize bool `json:"allowInsecureKeySize,omitempty"`

	// AllowECDSAKeys lets requests use ECDSA keys (keySize then does not
	// apply). The pkiMessage is then signed by the profile's RSA signer,
	// since SCEP envelopes the reply to the signer.
	// +optional
	AllowECDSAKeys bool `json:"allowECDSAKeys,omitempty"`

	// MaxAttempts is how many failed enrollment attempts (transport errors,
	// 5xx, timeouts, broken replies) a request gets before it fails. PENDING
	// polls do not count. The count survives operator restarts.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxAttempts int32 `json:"maxAttempts,omitempty"`

	// The durations are Go durations (time.ParseDuration, as metav1.Duration
	// decodes them). Their rules first match that grammar, since CEL's
	// duration() fails on anything else ("1d", "30") with a type conversion
	// error instead of a message; a value failing the grammar would also
	// break every client that decodes the profile.

	// RetryInterval is the first wait after a failed attempt, doubled (with
	// jitter) after each one up to MaxRetryInterval, and the interval between
	// CertPoll polls of a PENDING request.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$')",message="retryInterval must be a duration such as 30s, 2m or 1m30s (units ns, us, ms, s, m, h)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || duration(self) >= duration('1s')",message="retryInterval must be at least 1s"
	RetryInterval *metav1.Duration `json:"retryInterval,omitempty"`

	// MaxRetryInterval caps the backoff between failed attempts.
	// +optional
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$')",message="maxRetryInterval must be a duration such as 10m or 1h (units ns, us, ms, s, m, h)"
	MaxRetryInterval *metav1.Duration `json:"maxRetryInterval,omitempty"`

	// PendingTimeout is how long a PENDING request (waiting for a CA
	// manager's approval) is polled before it fails.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$')",message="pendingTimeout must be a duration such as 24h or 72h (units ns, us, ms, s, m, h; no days)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || duration(self) >= duration('1m')",message="pendingTimeout must be at least 1m"
	PendingTimeout *metav1.Duration `json:"pendingTimeout,omitempty"`

	// Challenge is how the operator proves its right to enroll.
	// +optional
	// +kubebuilder:default={type: None}
	Challenge Challenge `json:"challenge,omitempty"`

	// CSRMode is how cert-manager's CSR reaches the server. Passthrough
	// sends it unchanged, in a pkiMessage signed by an RSA key that the
	// operator keeps per profile; for servers without a challenge.
	// Rebuild reads the workload's pending private key, checks that it
	// matches the CSR, and builds a new CSR with the same subject and
	// extensions plus the challenge password, signed by that key; it is
	// required for Static and Dynamic challenges.
	// +optional
	// +kubebuilder:default=Passthrough
	CSRMode CSRMode `json:"csrMode,omitempty"`

	// MaxConcurrentRequests bounds the enrollments of this profile in flight
	// at the SCEP server at once (PKIOperations and NDES password fetches),
	// so a burst of Certificates never floods the PKI; the others wait their
	// turn without spending attempts.
	// +optional
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	MaxConcurrentRequests int32 `json:"maxConcurrentRequests,omitempty"`

	// NamespaceSelector says which namespaces may use a ClusterSCEPProfile
	// (a SCEPProfile serves only its own namespace and refuses the field).
	// Unset, every namespace may (the status then shows a PolicyWarning);
	// {} says so explicitly. A request from another namespace fails with
	// reason NamespaceNotAllowed and nothing is sent.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// AD CS practice: the types of these fields are in adcs_types.go.

	// CertificateTemplate names the AD CS certificate template (its name,
	// the cn, not its display name) the operator asks for: csrMode Rebuild
	// adds it to every CSR as the Microsoft template extension
	// szOID_ENROLL_CERTTYPE_EXTENSION (1.3.6.1.4.1.311.20.2). Only the
	// profile chooses it: a request carrying either template extension is
	// refused. Stock NDES picks its template from its registry by key usage
	// instead (docs/ndes.md says when the request's template counts).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9 ._-]*$`
	CertificateTemplate string `json:"certificateTemplate,omitempty"`

	// CryptoFloor is the weakest content encryption and digest the
	// operator may use with the server. Unset: triple DES and SHA-1, so
	// single DES is refused and SHA-1 is used only where the server
	// announces nothing better (the strongest announced is always chosen).
	// A server below the floor (or one that does not answer GetCACaps, and
	// so is assumed to offer only triple DES and SHA-1) leaves the profile
	// not Ready with reason BelowCryptoFloor, naming what the server lacks
	// and the field that would allow it.
	// +optional
	CryptoFloor *CryptoFloor `json:"cryptoFloor,omitempty"`

	// RenewWithRenewalReq makes the renewal of a Certificate that holds a
	// certificate of this profile's CA a RenewalReq (RFC 8894 section
	// 3.3.1.2), signed with that certificate and its key, read from the
	// Certificate's Secret (spec.secretName) under the same access rules as
	// csrMode Rebuild (the operator may read Secrets only in the namespaces
	// granted to it). Used only when the server lists Renewal; otherwise,
	// or when the current certificate cannot be used, the request is a
	// fresh enrollment and its Event says why. A Dynamic (NDES) one-time
	// password is never spent on a RenewalReq: the current certificate
	// authenticates it; a Static password is sent as with PKCSReq (step-ca
	// checks it on RenewalReq too).
	// +optional
	RenewWithRenewalReq bool `json:"renewWithRenewalReq,omitempty"`
}

// VariableConstraints limits the variables a tenant picks freely.
type VariableConstraints struct {
	// Email lists the values %email% may take, as templates where "*"
	// matches any run of characters and %namespace%, %certificatename% and
	// %domainname% expand (matched literally), e.g. "*@corp.example" or
	// "%namespace%-*@corp.example". Unset, %email% may take any value.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:XValidation:rule="!self.replace('%namespace%', '').replace('%certificatename%', '').replace('%domainname%', '').contains('%')",message="an email constraint may use %namespace%, %certificatename% and %domainname% only"
	Email []string `json:"email,omitempty"`
}

// TLSConfig is the trust for an https SCEP URL.
// +kubebuilder:validation:XValidation:rule="[has(self.caBundle), has(self.caBundleSecretRef), has(self.caBundleConfigMapRef)].filter(x, x).size() <= 1",message="give one of caBundle, caBundleSecretRef and caBundleConfigMapRef"
type TLSConfig struct {
	// CABundle is PEM-encoded CA certificates that verify the server.
	// Without it (and without caBundleSecretRef) the system roots are used.
	// +optional
	// +kubebuilder:validation:MaxLength=1048576
	CABundle string `json:"caBundle,omitempty"`

	// CABundleSecretRef names a Secret key holding the PEM bundle (key
	// default "ca.crt"). For a ClusterSCEPProfile the Secret lives in the
	// operator's cluster resource namespace.
	// +optional
	CABundleSecretRef *SecretKeySelector `json:"caBundleSecretRef,omitempty"`

	// CABundleConfigMapRef names a ConfigMap key holding the PEM bundle
	// (key default "ca.crt"), such as a target ConfigMap that
	// trust-manager writes. Like caBundleSecretRef, it is read in the
	// profile's own namespace, and for a ClusterSCEPProfile in the
	// operator's cluster resource namespace.
	// +optional
	CABundleConfigMapRef *ConfigMapKeySelector `json:"caBundleConfigMapRef,omitempty"`

	// InsecureSkipVerify turns TLS verification of the server off. Anyone
	// on the path could then answer for the server; the operator logs a
	// warning and sets a Warning Event.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// SubjectAltName is a template for one alternative name.
type SubjectAltName struct {
	// Type is the kind of name.
	Type SANType `json:"type"`

	// Value is the name, with %variables% and "*" matching any run of
	// characters, e.g. "%certificatename%.%namespace%.svc.%domainname%" or
	// "*.apps.corp.example".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.replace('%namespace%', '').replace('%certificatename%', '').replace('%requestname%', '').replace('%username%', '').replace('%email%', '').replace('%domainname%', '').replace('%devicename%', '').contains('%')",message="unknown %variable%: the known ones are %namespace%, %certificatename%, %requestname%, %username%, %email%, %domainname% and %devicename%"
	Value string `json:"value"`
}

// SANType is a subjectAltName type of MDM SCEP profiles.
// +kubebuilder:validation:Enum=RFC822Name;DNSName;URI;UPN
type SANType string

// The alternative name types.
const (
	SANTypeRFC822Name SANType = "RFC822Name"
	SANTypeDNSName    SANType = "DNSName"
	SANTypeURI        SANType = "URI"
	SANTypeUPN        SANType = "UPN"
)

// KeyUsage is a key usage a request may ask for: MDM profiles offer
// signing and encryption.
// +kubebuilder:validation:Enum=DigitalSignature;KeyEncipherment
type KeyUsage string

// The key usages.
const (
	KeyUsageDigitalSignature KeyUsage = "DigitalSignature"
	KeyUsageKeyEncipherment  KeyUsage = "KeyEncipherment"
)

// CSRMode says how the CSR reaches the SCEP server.
// +kubebuilder:validation:Enum=Passthrough;Rebuild
type CSRMode string

// The CSR modes.
const (
	CSRModePassthrough CSRMode = "Passthrough"
	CSRModeRebuild     CSRMode = "Rebuild"
)

// Challenge is the enrollment challenge.
// +kubebuilder:validation:XValidation:rule="!has(self.type) || self.type != 'Static' || has(self.passwordSecretRef)",message="challenge type Static needs passwordSecretRef (a Secret key holding the password; never inline)"
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'Static') || !has(self.passwordSecretRef)",message="passwordSecretRef is only used with challenge type Static"
// +kubebuilder:validation:XValidation:rule="!has(self.type) || self.type != 'Dynamic' || has(self.dynamic)",message="challenge type Dynamic needs dynamic (the NDES mscep_admin URL, auth and credentialsSecretRef)"
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'Dynamic') || !has(self.dynamic)",message="dynamic is only used with challenge type Dynamic"
type Challenge struct {
	// Type is None (the server asks no challenge), Static (one password,
	// from a Secret) or Dynamic (a one-time password fetched from NDES's
	// mscep_admin page for every attempt).
	// +optional
	// +kubebuilder:default=None
	Type ChallengeType `json:"type,omitempty"`

	// PasswordSecretRef names the Secret key holding the Static password
	// (key default "password"). For a ClusterSCEPProfile the Secret lives in
	// the operator's cluster resource namespace.
	// +optional
	PasswordSecretRef *SecretKeySelector `json:"passwordSecretRef,omitempty"`

	// Dynamic configures the NDES one-time password.
	// +optional
	Dynamic *DynamicChallenge `json:"dynamic,omitempty"`

	// AllowUnpinnedHTTP lets a Static or Dynamic challenge travel over an
	// http:// url without caFingerprint. The password is then encrypted to
	// whichever certificate answers GetCACert, which a network attacker can
	// replace: only for test servers.
	// +optional
	AllowUnpinnedHTTP bool `json:"allowUnpinnedHTTP,omitempty"`
}

// ChallengeType is the kind of challenge password.
// +kubebuilder:validation:Enum=None;Static;Dynamic
type ChallengeType string

// The challenge types.
const (
	ChallengeNone    ChallengeType = "None"
	ChallengeStatic  ChallengeType = "Static"
	ChallengeDynamic ChallengeType = "Dynamic"
)

// DynamicChallenge is where and how to fetch NDES's one-time passwords.
// +kubebuilder:validation:XValidation:rule="!self.url.startsWith('http://') || (has(self.allowPlainHTTP) && self.allowPlainHTTP)",message="the NDES admin page over http:// exposes its credentials (NTLM can be relayed to AD CS, Basic is plain text): use an https:// url (with tls for its trust), or set allowPlainHTTP: true to accept that risk"
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || self.url.startsWith('https://')",message="dynamic.tls is only used with an https:// admin url"
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || self.auth != 'Kerberos' || has(self.kerberos)",message="auth Kerberos needs kerberos (the realm and its KDCs, or a krb5.conf ConfigMap)"
// +kubebuilder:validation:XValidation:rule="has(self.auth) && self.auth == 'Kerberos' || !has(self.kerberos)",message="kerberos is only used with auth: Kerberos"
type DynamicChallenge struct {
	// URL is NDES's admin page, e.g. http://ndes.corp.example/certsrv/mscep_admin/.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s/?#@]+(/[^\s]*)?$`
	URL string `json:"url"`

	// Auth is the HTTP authentication the page asks for: NTLM, Basic, or
	// Kerberos (HTTP Negotiate with a Kerberos ticket, what IIS keeps when
	// NTLM is turned off; configured in kerberos).
	// +optional
	// +kubebuilder:default=NTLM
	// +kubebuilder:validation:Enum=NTLM;Basic;Kerberos
	Auth string `json:"auth,omitempty"`

	// Kerberos configures auth Kerberos.
	// +optional
	Kerberos *KerberosAuth `json:"kerberos,omitempty"`

	// CredentialsSecretRef names a Secret with keys "username" (DOMAIN\user
	// or user@domain; for Kerberos the principal, user or user@REALM) and
	// "password", or, for Kerberos, "keytab" instead of "password".
	CredentialsSecretRef LocalObjectReference `json:"credentialsSecretRef"`

	// TLS configures trust for an https admin URL, independently of the
	// SCEP url's (without it, the system roots).
	// +optional
	TLS *TLSConfig `json:"tls,omitempty"`

	// AllowPlainHTTP allows an http:// admin URL: the credentials then cross
	// the network unprotected (NTLM relayable to AD CS web enrollment, Basic
	// in clear text). Only for test servers.
	// +optional
	AllowPlainHTTP bool `json:"allowPlainHTTP,omitempty"`
}

// SecretKeySelector names one key of a Secret.
type SecretKeySelector struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the Secret; each reference documents its default.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// LocalObjectReference names an object in the profile's Secret namespace.
type LocalObjectReference struct {
	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// SCEPProfileStatus is what the operator saw of the server.
type SCEPProfileStatus struct {
	// Conditions: Ready says whether requests can be enrolled, with a reason
	// a person can act on (Unreachable, FingerprintMismatch, SecretNotFound,
	// InvalidSpec, CAExpired, ...).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// CACertificates are the certificates of the last GetCACert answer
	// that the operator trusts (after the pin).
	// +optional
	// +listType=atomic
	CACertificates []CACertificate `json:"caCertificates,omitempty"`

	// Capabilities are the server's GetCACaps keywords (the minimal set
	// GET, SHA-1, DES3 when the server does not answer GetCACaps).
	// +optional
	// +listType=atomic
	Capabilities []string `json:"capabilities,omitempty"`

	// Algorithms are the content encryption and digest the operator uses
	// with the server, chosen from Capabilities under spec.cryptoFloor,
	// e.g. "AES-256-CBC/SHA-512".
	// +optional
	Algorithms string `json:"algorithms,omitempty"`

	// CAExpiry is the earliest notAfter among CACertificates.
	// +optional
	CAExpiry *metav1.Time `json:"caExpiry,omitempty"`

	// LastCheckTime is when the server was last asked.
	// +optional
	LastCheckTime *metav1.Time `json:"lastCheckTime,omitempty"`

	// SignerSecretName is the Secret holding the Passthrough signer (an RSA
	// key and self-signed certificate), in the profile's Secret namespace.
	// +optional
	SignerSecretName string `json:"signerSecretName,omitempty"`

	// Servers is the health and capabilities of each SCEP server, url
	// first, then failoverURLs in order, as the last check found them.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=5
	Servers []ServerStatus `json:"servers,omitempty"`

	// NextCACertificates are the certificates of the server's last
	// GetNextCACert answer (RFC 8894 section 4.7) that differ from the
	// current ones, after checking that a trusted CA or RA certificate
	// signed it. Empty when the server announces no next CA.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	NextCACertificates []CACertificate `json:"nextCACertificates,omitempty"`

	// CARollover is the trust the operator derived from verified
	// GetNextCACert answers, on top of the profile's pins.
	// +optional
	CARollover *CARollover `json:"caRollover,omitempty"`
}

// ServerStatus is what the last check found of one SCEP server.
type ServerStatus struct {
	// URL is the server's endpoint (url or a failoverURLs entry).
	URL string `json:"url"`
	// Ready says whether the server answered GetCACaps and GetCACert with
	// certificates the pins trust.
	Ready bool `json:"ready"`
	// Reason is why it is not Ready, as the profile's Ready reasons.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message says what failed, in the words of the Ready condition.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Message string `json:"message,omitempty"`
	// Capabilities are the server's GetCACaps keywords.
	// +optional
	// +listType=atomic
	Capabilities []string `json:"capabilities,omitempty"`
}

// CARollover records the next CA certificates a pinned profile trusts
// because a certificate its pins trust announced them (GetNextCACert).
// Only the operator writes it (the status subresource); it is bound to
// the pins it was derived from, so that editing caFingerprint or
// caFingerprints forgets it.
type CARollover struct {
	// PinsDigest is the SHA-256 (hex) of the profile's pins when the next
	// CA certificates were verified.
	// +kubebuilder:validation:MaxLength=64
	PinsDigest string `json:"pinsDigest"`
	// Fingerprints are the SHA-256 fingerprints (upper-case hex with
	// colons) of the verified next CA certificates, most recent last.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:items:MaxLength=128
	Fingerprints []string `json:"fingerprints"`
	// SwitchedAt is when GetCACert last answered with one of them in
	// place of the CA certificates it answered before.
	// +optional
	SwitchedAt *metav1.Time `json:"switchedAt,omitempty"`
}

// CACertificate is one certificate of the GetCACert answer.
type CACertificate struct {
	// Role is CA, RA (signs and decrypts), RASigning or RAEncryption.
	Role string `json:"role"`
	// Subject is the certificate's subject DN.
	Subject string `json:"subject"`
	// NotAfter is the end of its validity.
	NotAfter metav1.Time `json:"notAfter"`
	// NotBefore is the start of its validity (set for next CA certificates).
	// +optional
	NotBefore *metav1.Time `json:"notBefore,omitempty"`
	// SHA256Fingerprint is the SHA-256 of its DER, upper-case hex with colons.
	SHA256Fingerprint string `json:"sha256Fingerprint"`
}
