package policy

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strings"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/dn"
)

// maxSubjectAttributes bounds the attributes of a subject: real subjects
// have a handful, and the matching below is quadratic.
const maxSubjectAttributes = 64

// subjectAttribute is one attribute of a CSR's subject, its value decoded.
type subjectAttribute struct {
	oid   asn1.ObjectIdentifier
	value string
}

func (a subjectAttribute) String() string {
	return dn.TypeName(a.oid) + "=" + quote(a.value)
}

// parseSubject reads every attribute of an encoded subject, in all its
// RDNs. A value that is not text, or holds control characters, is refused:
// such a subject is never a workload's, and CAs differ on how they show it.
func parseSubject(raw []byte) ([]subjectAttribute, *Violation) {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &rdns); err != nil || len(rest) > 0 {
		return nil, violation("spec.request", "the CSR cannot be read: its subject is not a DER distinguished name")
	}
	var out []subjectAttribute
	for _, rdn := range rdns {
		for _, atv := range rdn {
			s, ok := atv.Value.(string)
			if !ok {
				return nil, violation("spec.subject", "the subject's %s attribute is not text; a subject holds strings only", dn.TypeName(atv.Type))
			}
			a := subjectAttribute{oid: atv.Type, value: s}
			if hasControl(s) {
				return nil, violation("spec.subject", "the subject's %s holds a control character; remove it from the Certificate's subject", a)
			}
			out = append(out, a)
		}
	}
	if len(out) > maxSubjectAttributes {
		return nil, violation("spec.subject", "the subject has %d attributes; at most %d are accepted", len(out), maxSubjectAttributes)
	}
	return out, nil
}

// hasControl reports whether s holds an ASCII control character (a NUL
// can end a name early for one reader and not for another).
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// subjectString shows a subject as templates are written: most
// significant attribute last (RFC 4514), values unescaped.
func subjectString(attrs []subjectAttribute) string {
	parts := make([]string, len(attrs))
	for i, a := range attrs {
		parts[len(attrs)-1-i] = dn.TypeName(a.oid) + "=" + a.value
	}
	return quote(strings.Join(parts, ","))
}

func checkSubject(spec *scepv1alpha1.SCEPProfileSpec, got []subjectAttribute, vars Variables) *Violation {
	if IsNDES(spec) {
		if v := checkNDESSubject(got); v != nil {
			return v
		}
	}
	if spec.Subject == "" {
		if spec.AllowAnySubject {
			return nil
		}
		return violation("spec.subject", "the profile constrains no subject: set subject or allowAnySubject (subject is a DN template such as CN=%%certificatename%%.%%namespace%%,O=Corp; allowAnySubject: true accepts any subject)")
	}
	tmpl, err := dn.ParseAttributes(spec.Subject)
	if err != nil {
		return violation("spec.subject", "the template %q is not a distinguished name: %v", spec.Subject, err)
	}
	type wanted struct {
		oid  asn1.ObjectIdentifier
		name string
		tmpl template
		pat  pattern
	}
	want := make([]wanted, len(tmpl))
	for i, a := range tmpl {
		t := parseTemplate(a.Value)
		p, err := t.bind(vars, false)
		if err != nil {
			return violation("spec.subject", "%v", err)
		}
		want[i] = wanted{oid: a.Type, name: a.Name, tmpl: t, pat: p}
	}
	fits := func(w, g int) bool {
		return want[w].oid.Equal(got[g].oid) && want[w].pat.match(got[g].value)
	}
	wantOf := maxMatching(len(want), len(got), fits)
	prefix := fmt.Sprintf("the subject %s does not fit the template %q", subjectString(got), spec.Subject)
	matched := make([]bool, len(want))
	for _, w := range wantOf {
		if w >= 0 {
			matched[w] = true
		}
	}
	for g, w := range wantOf {
		if w >= 0 {
			continue
		}
		var same []string
		for _, w := range want {
			if w.oid.Equal(got[g].oid) {
				same = append(same, w.tmpl.describe(vars))
			}
		}
		if len(same) == 0 {
			return violation("spec.subject", "%s: the template has no %s attribute (set the Certificate's subject to what the template asks)", prefix, dn.TypeName(got[g].oid))
		}
		return violation("spec.subject", "%s: the subject's %s matches none of the template's %s values %s (set the Certificate's subject to what the template asks)", prefix, got[g], dn.TypeName(got[g].oid), capped(strings.Join(same, ", ")))
	}
	for w, ok := range matched {
		if !ok {
			return violation("spec.subject", "%s: no attribute of the subject matches %s=%s (set the Certificate's subject to what the template asks)", prefix, want[w].name, want[w].tmpl.describe(vars))
		}
	}
	return nil
}

// maxMatching pairs each of n got items with at most one of m wanted ones
// that fits it (a maximum bipartite matching, Kuhn's algorithm): a greedy
// pass could pair OU=* with OU=a and leave OU=a without a partner. It
// returns, for each got item, its wanted item or -1.
func maxMatching(m, n int, fits func(w, g int) bool) []int {
	wantOf := make([]int, n)
	for i := range wantOf {
		wantOf[i] = -1
	}
	var try func(w int, seen []bool) bool
	try = func(w int, seen []bool) bool {
		for g := 0; g < n; g++ {
			if seen[g] || !fits(w, g) {
				continue
			}
			seen[g] = true
			if wantOf[g] < 0 || try(wantOf[g], seen) {
				wantOf[g] = w
				return true
			}
		}
		return false
	}
	for w := 0; w < m; w++ {
		try(w, make([]bool, n))
	}
	return wantOf
}

// IsNDES reports whether a profile talks to Microsoft NDES: its dynamic
// challenge is NDES's, and NDES's endpoint is mscep.dll.
func IsNDES(spec *scepv1alpha1.SCEPProfileSpec) bool {
	return spec.Challenge.Type == scepv1alpha1.ChallengeDynamic || strings.Contains(strings.ToLower(spec.URL), "/mscep.dll")
}

// ndesUnsafe are the characters that, escaped in a subject, make AD CS
// refuse or mangle the request behind NDES.
const ndesUnsafe = `+;,="\`

func checkNDESSubject(got []subjectAttribute) *Violation {
	for _, a := range got {
		if i := strings.IndexAny(a.value, ndesUnsafe); i >= 0 {
			return violation("spec.subject", "the subject's %s contains %q, which NDES (AD CS) cannot issue escaped in a subject; remove it from the Certificate's subject", a, a.value[i:i+1])
		}
	}
	return nil
}
