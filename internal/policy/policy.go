// Package policy decides whether a certificate request fits a SCEP profile.
// Nothing is sent to a SCEP server for a request that does not fit.
//
// The tenant who writes a CertificateRequest (or the Certificate behind it)
// is not trusted: its name, annotations, owner references and every byte of
// its CSR are input to check. Check reads the CSR from its raw encoding, so
// that what is checked is what a CA reads, and refuses whatever the profile
// does not allow:
//
//   - the subject must match spec.subject, a DN template whose attribute
//     values may hold "*" (any run of characters) and %variables%; the
//     template is parsed as a DN before any variable is looked at, and a
//     variable's value matches only itself, so a value holding ',' '+' '='
//     or '*' can neither add attributes nor widen a glob. An empty subject
//     template is a violation unless spec.allowAnySubject says so. Even
//     then, a subject value that is not text or holds a control character
//     is refused.
//   - each alternative name must match a template of its type in
//     spec.subjectAltNames (an empty list allows none, unless
//     spec.allowAnySubjectAltNames); IP addresses, directoryName,
//     registeredID, x400Address, ediPartyName and otherNames other than
//     UPN are always refused.
//   - the key (spec.keySize, spec.allowECDSAKeys), key usages
//     (spec.keyUsage; certificate and CRL signing never), extended key
//     usages (spec.extendedKeyUsages; anyExtendedKeyUsage never), no CA
//     (basicConstraints CA:true or the request's spec.isCA), no extension
//     but those the profile governs or lists in spec.allowedExtensions, no
//     extension twice, and no CSR attribute but extensionRequest (a
//     challengePassword or Microsoft's name-value pairs, which AD CS can
//     read as alternative names, are refused).
//
// # Variables
//
// VariablesFor maps each variable to something true about the request.
// Who chooses the value matters for a profile's safety:
//
//	%namespace%        the request's namespace: not tenant-controlled
//	%domainname%       the cluster's DNS domain: not tenant-controlled
//	%certificatename%  the name of the Certificate that owns the request
//	                   (its controller ownerReference; see CertificateOwner):
//	                   any Kubernetes name the tenant picks in its namespace
//	%devicename%       <certificatename>.<namespace>: as above
//	%requestname%      the CertificateRequest's name: the tenant's choice
//	%username%         spec.username: set by cert-manager's webhook from
//	                   the authenticated creator where the webhook runs
//	                   (cert-manager's own service account for Certificates,
//	                   the same for every namespace), free text otherwise
//	%email%            the annotation scep.certificates.dev/email: anything
//	                   the tenant writes, unless spec.variables.email
//	                   constrains it
//
// A template that names an identity (a UPN or RFC822Name that AD, Wi-Fi or
// VPN accept as a user) must include %namespace% or take only constrained
// values; otherwise one namespace can claim another's identity, e.g. a
// Certificate named "administrator" with the UPN template
// "%certificatename%@corp.example". Warnings lists such gaps.
package policy

import (
	"crypto/x509"
	"fmt"
	"unicode/utf8"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// Request is what Check holds against a profile: one CertificateRequest's
// CSR and what the policy needs to know about the request itself.
type Request struct {
	// CSR is the request's CSR as x509.ParseCertificateRequest returns it;
	// Check reads its raw encoding (RawTBSCertificateRequest) and its
	// parsed public key.
	CSR *x509.CertificateRequest
	// IsCA is the CertificateRequest's spec.isCA, which asks for a CA
	// certificate even when the CSR does not.
	IsCA bool
	// Vars are the request's variables (VariablesFor).
	Vars Variables
}

// Violation says which field a request does not fit, and why.
type Violation struct {
	// Field is the profile field the request does not fit, e.g.
	// "spec.subjectAltNames", or, for what no profile allows, the
	// request's own field ("spec.isCA", "spec.request").
	Field string
	// Reason is a sentence a workload owner or an admin can act on. It
	// quotes what the tenant wrote only in bounded form.
	Reason string
}

// Error says that the request does not fit, naming the field and the
// reason; the signer shows it on the request and in its Event.
func (v *Violation) Error() string {
	return fmt.Sprintf("the request does not fit the SCEP profile: %s: %s", v.Field, v.Reason)
}

func violation(field, format string, args ...any) *Violation {
	return &Violation{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Check returns a *Violation when req does not fit spec, and nil when it
// does. It never panics, whatever the CSR holds.
func Check(spec *scepv1alpha1.SCEPProfileSpec, req Request) error {
	if spec == nil {
		return violation("spec", "there is no profile to check the request against")
	}
	if req.CSR == nil {
		return violation("spec.request", "there is no certificate request to check")
	}
	if req.IsCA {
		return violation("spec.isCA", "the request asks for a CA certificate; a SCEP profile issues end-entity certificates only: remove isCA from the Certificate")
	}
	c, v := readCSR(req.CSR)
	if v != nil {
		return v
	}
	for _, check := range []func() *Violation{
		func() *Violation { return checkKey(spec, req.CSR) },
		func() *Violation { return checkEmail(spec, req.Vars) },
		func() *Violation { return checkSubject(spec, c.subject, req.Vars) },
		func() *Violation { return checkExtensions(spec, c.extensions) },
		func() *Violation { return checkSANs(spec, c.extensions, req.Vars) },
	} {
		if v := check(); v != nil {
			return v
		}
	}
	return nil
}

// maxQuoted bounds what a message repeats of a tenant's string.
const maxQuoted = 128

// quote is %q of s, cut after maxQuoted bytes (at a character boundary)
// with the full length said, so a message never carries an unbounded
// tenant string.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}
