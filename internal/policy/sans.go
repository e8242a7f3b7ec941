package policy

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

var (
	oidExtSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// oidUPN is Microsoft's userPrincipalName otherName, which AD maps to
	// an account.
	oidUPN = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
)

// altName is one alternative name of a CSR, as encoded.
type altName struct {
	typ   scepv1alpha1.SANType
	value string
}

func (n altName) String() string { return string(n.typ) + " " + quote(n.value) }

// otherName is RFC 5280's OtherName, inside its [0] tag. Value is the
// [0] EXPLICIT wrapper (encoding/asn1 hands a RawValue field its tag as
// it is).
type otherName struct {
	TypeID asn1.ObjectIdentifier
	Value  asn1.RawValue
}

// GeneralName tags (RFC 5280, section 4.2.1.6) a profile can never allow.
var refusedNameTypes = map[int]string{
	3: "an x400Address",
	4: "a directoryName",
	5: "an ediPartyName",
	8: "a registeredID",
}

// altNamesOf reads the subjectAltName extension among exts in full. Only
// the four types a profile can name pass; any other is a violation, since
// a CA may honour what the profile cannot see.
func altNamesOf(exts []pkix.Extension) ([]altName, *Violation) {
	var ext *pkix.Extension
	for i := range exts {
		if exts[i].Id.Equal(oidExtSubjectAltName) {
			ext = &exts[i]
		}
	}
	if ext == nil {
		return nil, nil
	}
	malformed := violation("spec.subjectAltNames", "the CSR's subjectAltName extension is malformed")
	var raw []asn1.RawValue
	if rest, err := asn1.Unmarshal(ext.Value, &raw); err != nil || len(rest) > 0 || len(raw) == 0 {
		return nil, malformed
	}
	var out []altName
	for _, n := range raw {
		if n.Class != asn1.ClassContextSpecific {
			return nil, malformed
		}
		switch n.Tag {
		case 0:
			var on otherName
			if rest, err := asn1.UnmarshalWithParams(n.FullBytes, &on, "tag:0"); err != nil || len(rest) > 0 {
				return nil, malformed
			}
			if !on.TypeID.Equal(oidUPN) {
				return nil, violation("spec.subjectAltNames", "the CSR asks for an otherName of type %s; of otherNames only UPN (%s) is ever allowed", on.TypeID, oidUPN)
			}
			if on.Value.Class != asn1.ClassContextSpecific || on.Value.Tag != 0 || !on.Value.IsCompound {
				return nil, malformed
			}
			var v asn1.RawValue
			if rest, err := asn1.Unmarshal(on.Value.Bytes, &v); err != nil || len(rest) > 0 ||
				v.Class != asn1.ClassUniversal || v.Tag != asn1.TagUTF8String || v.IsCompound || !utf8.Valid(v.Bytes) {
				return nil, violation("spec.subjectAltNames", "the CSR's UPN is not a UTF8String")
			}
			out = append(out, altName{scepv1alpha1.SANTypeUPN, string(v.Bytes)})
		case 1, 2, 6:
			t := map[int]scepv1alpha1.SANType{1: scepv1alpha1.SANTypeRFC822Name, 2: scepv1alpha1.SANTypeDNSName, 6: scepv1alpha1.SANTypeURI}[n.Tag]
			if n.IsCompound {
				return nil, malformed
			}
			out = append(out, altName{t, string(n.Bytes)})
		case 7:
			what := fmt.Sprintf("%x", n.Bytes)
			if len(n.Bytes) == net.IPv4len || len(n.Bytes) == net.IPv6len {
				what = net.IP(n.Bytes).String()
			}
			return nil, violation("spec.subjectAltNames", "the CSR asks for the IP address %s; SCEP profiles never allow IP addresses (remove ipAddresses from the Certificate)", quote(what))
		default:
			what, ok := refusedNameTypes[n.Tag]
			if !ok {
				return nil, malformed
			}
			return nil, violation("spec.subjectAltNames", "the CSR asks for %s alternative name; SCEP profiles allow only RFC822Name, DNSName, URI and UPN names", what)
		}
	}
	for _, n := range out {
		// dNSName, rfc822Name and URI are IA5Strings; nothing but printable
		// ASCII belongs in any of the four.
		if hasControl(n.value) || (n.typ != scepv1alpha1.SANTypeUPN && strings.ContainsFunc(n.value, func(r rune) bool { return r > 0x7e })) {
			return nil, violation("spec.subjectAltNames", "the CSR's %s holds a character that is not printable ASCII", n)
		}
	}
	return out, nil
}

func checkSANs(spec *scepv1alpha1.SCEPProfileSpec, exts []pkix.Extension, vars Variables) *Violation {
	names, v := altNamesOf(exts)
	if v != nil || len(names) == 0 {
		return v
	}
	if len(spec.SubjectAltNames) == 0 {
		if spec.AllowAnySubjectAltNames {
			return nil
		}
		return violation("spec.subjectAltNames", "the CSR asks for %s, but the profile allows no alternative names: list templates in spec.subjectAltNames, or set allowAnySubjectAltNames: true to accept any", names[0])
	}
	type allowed struct {
		tmpls    []string
		patterns []pattern
		unbound  []string
	}
	byType := map[scepv1alpha1.SANType]*allowed{}
	for i, san := range spec.SubjectAltNames {
		a := byType[san.Type]
		if a == nil {
			a = &allowed{}
			byType[san.Type] = a
		}
		t := parseTemplate(san.Value)
		a.tmpls = append(a.tmpls, t.describe(vars))
		fold := san.Type == scepv1alpha1.SANTypeDNSName || san.Type == scepv1alpha1.SANTypeRFC822Name
		p, err := t.bind(vars, fold)
		if err != nil {
			a.unbound = append(a.unbound, fmt.Sprintf("spec.subjectAltNames[%d] cannot apply: %v", i, err))
			continue
		}
		a.patterns = append(a.patterns, p)
	}
	for _, n := range names {
		a := byType[n.typ]
		if a == nil {
			return violation("spec.subjectAltNames", "the CSR asks for %s; the profile allows no %s names", n, n.typ)
		}
		ok := false
		for _, p := range a.patterns {
			if p.match(n.value) {
				ok = true
				break
			}
		}
		if !ok {
			msg := fmt.Sprintf("the CSR asks for %s, which matches none of the profile's %s templates %s", n, n.typ, capped(strings.Join(a.tmpls, ", ")))
			if len(a.unbound) > 0 {
				msg += "; " + strings.Join(a.unbound, "; ")
			}
			return violation("spec.subjectAltNames", "%s", msg)
		}
	}
	return nil
}

// capped cuts an admin's long text (a list of templates) for a message.
func capped(s string) string {
	const limit = 512
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
