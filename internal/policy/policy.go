// Package policy decides whether a certificate request fits a SCEP profile:
// it expands the profile's %variable% templates for one request and checks
// the CSR's subject, alternative names, key usage and key against them.
// Nothing is sent to a SCEP server for a request that does not fit.
package policy

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"regexp"
	"sort"
	"strings"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/dn"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// Variables maps a variable's name (without the percent signs) to its value
// for one request. See Known for the names.
type Variables map[string]string

// Known lists the variables a template may use, in the order the docs list
// them. The API schema refuses any other.
var Known = []string{"namespace", "certificatename", "requestname", "username", "email", "domainname", "devicename"}

var variablePattern = regexp.MustCompile(`%([A-Za-z]*)%`)

// Expand replaces each %variable% of tmpl. A variable without a value for
// this request is an error, so that a template never silently matches less.
func Expand(tmpl string, vars Variables) (string, error) {
	var missing []string
	out := variablePattern.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := strings.ToLower(m[1 : len(m)-1])
		v, ok := vars[name]
		if !ok || v == "" {
			missing = append(missing, m)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("%s has no value for this request", strings.Join(missing, ", "))
	}
	return out, nil
}

// Violation says which profile field a request does not fit, and why.
type Violation struct {
	// Field is the profile field, e.g. "spec.subjectAltNames".
	Field string
	// Reason is a sentence a workload owner can act on.
	Reason string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("the request does not fit the SCEP profile: %s: %s", v.Field, v.Reason)
}

func violation(field, format string, args ...any) *Violation {
	return &Violation{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Check returns a *Violation when csr does not fit spec for a request with
// vars, and nil when it does.
func Check(spec *scepv1alpha1.SCEPProfileSpec, csr *x509.CertificateRequest, vars Variables) error {
	if err := checkKey(spec, csr); err != nil {
		return err
	}
	if err := checkSubject(spec, csr, vars); err != nil {
		return err
	}
	if IsNDES(spec) {
		if err := checkNDESSubject(csr); err != nil {
			return err
		}
	}
	if err := checkSANs(spec, csr, vars); err != nil {
		return err
	}
	return checkKeyUsage(spec, csr)
}

func checkKey(spec *scepv1alpha1.SCEPProfileSpec, csr *x509.CertificateRequest) error {
	size := int(spec.KeySize)
	if size == 0 {
		size = 2048
	}
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() != size {
			return violation("spec.keySize", "the key is RSA %d; the profile requires RSA %d (set the Certificate's privateKey.size)", k.N.BitLen(), size)
		}
	case *ecdsa.PublicKey:
		if !spec.AllowECDSAKeys {
			return violation("spec.allowECDSAKeys", "the key is ECDSA %s; the profile requires RSA %d (set the Certificate's privateKey.algorithm: RSA)", k.Curve.Params().Name, size)
		}
	default:
		return violation("spec.keySize", "the key is %T; the profile requires RSA %d", csr.PublicKey, size)
	}
	return nil
}

// IsNDES reports whether a profile talks to Microsoft NDES: its dynamic
// challenge is NDES's, and NDES's endpoint is mscep.dll.
func IsNDES(spec *scepv1alpha1.SCEPProfileSpec) bool {
	return spec.Challenge.Type == scepv1alpha1.ChallengeDynamic || strings.Contains(strings.ToLower(spec.URL), "/mscep.dll")
}

// ndesUnsafe are the characters that, escaped in a subject, make AD CS
// refuse or mangle the request behind NDES.
const ndesUnsafe = `+;,="\`

func checkNDESSubject(csr *x509.CertificateRequest) error {
	for _, a := range attributes(csr.Subject) {
		if i := strings.IndexAny(a.value, ndesUnsafe); i >= 0 {
			return violation("spec.subject", "the subject value %q contains %q, which NDES (AD CS) cannot issue escaped in a subject; remove it from the Certificate's subject", a.value, a.value[i:i+1])
		}
	}
	return nil
}

func checkSubject(spec *scepv1alpha1.SCEPProfileSpec, csr *x509.CertificateRequest, vars Variables) error {
	if spec.Subject == "" {
		return nil
	}
	expanded, err := Expand(spec.Subject, vars)
	if err != nil {
		return violation("spec.subject", "%v", err)
	}
	want, err := dn.Parse(expanded)
	if err != nil {
		return violation("spec.subject", "the template expands to %q, which is not a distinguished name: %v", expanded, err)
	}
	if !namesMatch(want, csr.Subject) {
		return violation("spec.subject", "the subject %q does not match %q (template %q)", csr.Subject.String(), want.String(), spec.Subject)
	}
	return nil
}

// namesMatch compares two names as sets of (type, value) attributes; a "*"
// in a wanted value matches any run of characters.
func namesMatch(want, got pkix.Name) bool {
	w, g := attributes(want), attributes(got)
	if len(w) != len(g) {
		return false
	}
	used := make([]bool, len(g))
	for _, wa := range w {
		found := false
		for i, ga := range g {
			if used[i] || wa.oid != ga.oid {
				continue
			}
			if re, err := glob(wa.value, false); err == nil && re.MatchString(ga.value) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

type attribute struct{ oid, value string }

func attributes(n pkix.Name) []attribute {
	var out []attribute
	for _, rdn := range n.ToRDNSequence() {
		for _, atv := range rdn {
			out = append(out, attribute{oid: atv.Type.String(), value: attributeValue(atv.Value)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].oid < out[j].oid })
	return out
}

func attributeValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case asn1.RawValue:
		return string(x.Bytes)
	}
	return fmt.Sprint(v)
}

// glob turns a template value into an anchored pattern where "*" matches
// any run of characters. It fails on a value that is not valid UTF-8
// (regexp refuses it), which the API never stores but a caller might pass.
func glob(pattern string, foldCase bool) (*regexp.Regexp, error) {
	quoted := strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, `.*`)
	if foldCase {
		quoted = "(?i)" + quoted
	}
	return regexp.Compile("^" + quoted + "$")
}

func checkSANs(spec *scepv1alpha1.SCEPProfileSpec, csr *x509.CertificateRequest, vars Variables) error {
	if len(spec.SubjectAltNames) == 0 {
		return nil
	}
	allowed := map[scepv1alpha1.SANType][]*regexp.Regexp{}
	for i, san := range spec.SubjectAltNames {
		v, err := Expand(san.Value, vars)
		if err != nil {
			return violation(fmt.Sprintf("spec.subjectAltNames[%d]", i), "%v", err)
		}
		fold := san.Type == scepv1alpha1.SANTypeDNSName || san.Type == scepv1alpha1.SANTypeRFC822Name
		re, err := glob(v, fold)
		if err != nil {
			return violation(fmt.Sprintf("spec.subjectAltNames[%d]", i), "the value expands to %q, which cannot be matched: %v", v, err)
		}
		allowed[san.Type] = append(allowed[san.Type], re)
	}
	upns, err := scep.UPNs(csr.Extensions)
	if err != nil {
		return violation("spec.subjectAltNames", "the CSR's subjectAltName extension is malformed: %v", err)
	}
	if len(csr.IPAddresses) > 0 {
		return violation("spec.subjectAltNames", "the CSR asks for IP addresses %v; SCEP profiles allow only RFC822Name, DNSName, URI and UPN names", csr.IPAddresses)
	}
	check := func(t scepv1alpha1.SANType, names []string) error {
		for _, n := range names {
			ok := false
			for _, re := range allowed[t] {
				if re.MatchString(n) {
					ok = true
					break
				}
			}
			if !ok {
				return violation("spec.subjectAltNames", "%s %q is not allowed by the profile", t, n)
			}
		}
		return nil
	}
	uris := make([]string, len(csr.URIs))
	for i, u := range csr.URIs {
		uris[i] = u.String()
	}
	for _, c := range []struct {
		t     scepv1alpha1.SANType
		names []string
	}{
		{scepv1alpha1.SANTypeDNSName, csr.DNSNames},
		{scepv1alpha1.SANTypeRFC822Name, csr.EmailAddresses},
		{scepv1alpha1.SANTypeURI, uris},
		{scepv1alpha1.SANTypeUPN, upns},
	} {
		if err := check(c.t, c.names); err != nil {
			return err
		}
	}
	return nil
}

var oidKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}

func checkKeyUsage(spec *scepv1alpha1.SCEPProfileSpec, csr *x509.CertificateRequest) error {
	if len(spec.KeyUsage) == 0 {
		return nil
	}
	var allowed x509.KeyUsage
	for _, ku := range spec.KeyUsage {
		switch ku {
		case scepv1alpha1.KeyUsageDigitalSignature:
			allowed |= x509.KeyUsageDigitalSignature
		case scepv1alpha1.KeyUsageKeyEncipherment:
			allowed |= x509.KeyUsageKeyEncipherment
		}
	}
	requested, err := requestedKeyUsage(csr)
	if err != nil {
		return violation("spec.keyUsage", "%v", err)
	}
	if extra := requested &^ allowed; extra != 0 {
		return violation("spec.keyUsage", "the CSR asks for key usages %s; the profile allows %s (set the Certificate's usages)", keyUsageNames(requested), keyUsageNames(allowed))
	}
	return nil
}

func requestedKeyUsage(csr *x509.CertificateRequest) (x509.KeyUsage, error) {
	for _, e := range csr.Extensions {
		if !e.Id.Equal(oidKeyUsage) {
			continue
		}
		var bits asn1.BitString
		if rest, err := asn1.Unmarshal(e.Value, &bits); err != nil || len(rest) > 0 {
			return 0, fmt.Errorf("the CSR's keyUsage extension is malformed")
		}
		var ku x509.KeyUsage
		for i := 0; i < 9; i++ {
			if bits.At(i) != 0 {
				ku |= 1 << uint(i)
			}
		}
		return ku, nil
	}
	return 0, nil
}

var keyUsageLabels = []struct {
	ku   x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "DigitalSignature"},
	{x509.KeyUsageContentCommitment, "ContentCommitment"},
	{x509.KeyUsageKeyEncipherment, "KeyEncipherment"},
	{x509.KeyUsageDataEncipherment, "DataEncipherment"},
	{x509.KeyUsageKeyAgreement, "KeyAgreement"},
	{x509.KeyUsageCertSign, "CertSign"},
	{x509.KeyUsageCRLSign, "CRLSign"},
	{x509.KeyUsageEncipherOnly, "EncipherOnly"},
	{x509.KeyUsageDecipherOnly, "DecipherOnly"},
}

func keyUsageNames(ku x509.KeyUsage) string {
	var names []string
	for _, l := range keyUsageLabels {
		if ku&l.ku != 0 {
			names = append(names, l.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
