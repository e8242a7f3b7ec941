package policy

import (
	"fmt"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// Warnings lists what spec leaves unconstrained, one sentence each, for
// the profile's PolicyWarning condition: an explicitly unconstrained
// subject or alternative names, %email% used without spec.variables.email,
// and identity templates (UPN, RFC822Name) that any namespace can fill
// with the same value. The spec is valid either way; nil means nothing to
// warn about.
func Warnings(spec *scepv1alpha1.SCEPProfileSpec) []string {
	var out []string
	if spec.Subject == "" && spec.AllowAnySubject {
		out = append(out, "allowAnySubject: requests may carry any subject")
	}
	if len(spec.SubjectAltNames) == 0 && spec.AllowAnySubjectAltNames {
		out = append(out, "allowAnySubjectAltNames: requests may carry any RFC822Name, DNSName, URI and UPN alternative name")
	}
	emailConstrained := spec.Variables != nil && len(spec.Variables.Email) > 0
	if !emailConstrained {
		var where []string
		if parseTemplate(spec.Subject).uses("email") {
			where = append(where, "spec.subject")
		}
		for i, san := range spec.SubjectAltNames {
			if parseTemplate(san.Value).uses("email") {
				where = append(where, fmt.Sprintf("spec.subjectAltNames[%d]", i))
			}
		}
		if len(where) > 0 {
			out = append(out, fmt.Sprintf("%%email%% is used in %s but spec.variables.email does not constrain it: a tenant can give it any value (annotation %s)", joinAnd(where), EmailAnnotation))
		}
	}
	for i, san := range spec.SubjectAltNames {
		if san.Type != scepv1alpha1.SANTypeUPN && san.Type != scepv1alpha1.SANTypeRFC822Name {
			continue
		}
		if t := parseTemplate(san.Value); sharedIdentity(t, spec) {
			out = append(out, fmt.Sprintf("spec.subjectAltNames[%d] (%s %q) is an identity any namespace using the profile can fill with the same value (e.g. a Certificate named after an account): include %%namespace%% in it, or constrain the variables it uses", i, san.Type, san.Value))
		}
	}
	return out
}

// sharedIdentity reports whether two namespaces can obtain the same name
// from an identity template t: it has no %namespace% and holds a glob or a
// variable a tenant chooses (%email% counts as chosen unless every
// spec.variables.email entry includes %namespace%).
func sharedIdentity(t template, spec *scepv1alpha1.SCEPProfileSpec) bool {
	if t.uses("namespace") {
		return false
	}
	if t.hasGlob() {
		return true
	}
	for _, v := range t.variables() {
		switch v {
		case "domainname":
		case "email":
			if !emailNamespaced(spec) {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// emailNamespaced reports whether every value %email% may take includes
// the namespace.
func emailNamespaced(spec *scepv1alpha1.SCEPProfileSpec) bool {
	if spec.Variables == nil || len(spec.Variables.Email) == 0 {
		return false
	}
	for _, c := range spec.Variables.Email {
		if !parseTemplate(c).uses("namespace") {
			return false
		}
	}
	return true
}

func joinAnd(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	out := items[0]
	for _, s := range items[1 : len(items)-1] {
		out += ", " + s
	}
	return out + " and " + items[len(items)-1]
}
