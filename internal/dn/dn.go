// Package dn reads X.509 distinguished names written the way people and MDM
// profiles write them ("CN=app,O=Corp,C=US" or "/CN=app/O=Corp").
package dn

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strings"
)

// attributeOIDs maps the short names people use to attribute types.
var attributeOIDs = map[string]asn1.ObjectIdentifier{
	"CN":           {2, 5, 4, 3},
	"SERIALNUMBER": {2, 5, 4, 5},
	"C":            {2, 5, 4, 6},
	"L":            {2, 5, 4, 7},
	"ST":           {2, 5, 4, 8},
	"S":            {2, 5, 4, 8},
	"STREET":       {2, 5, 4, 9},
	"O":            {2, 5, 4, 10},
	"OU":           {2, 5, 4, 11},
	"T":            {2, 5, 4, 12},
	"TITLE":        {2, 5, 4, 12},
	"POSTALCODE":   {2, 5, 4, 17},
	"GN":           {2, 5, 4, 42},
	"SN":           {2, 5, 4, 4},
	"DC":           {0, 9, 2342, 19200300, 100, 1, 25},
	"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
	"E":            {1, 2, 840, 113549, 1, 9, 1},
	"EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1},
}

// Attribute is one attribute of a distinguished name as written: its type
// and its value with escapes removed, not yet encoded.
type Attribute struct {
	// Type is the attribute type, e.g. 2.5.4.3 for CN.
	Type asn1.ObjectIdentifier
	// Name is the short name the type was written with, upper-cased.
	Name string
	// Value is the value, unescaped and trimmed.
	Value string
}

// ParseAttributes reads a distinguished name into its attributes, most
// significant first, without encoding the values. Parse uses it; a caller
// that treats values as templates (internal/policy) uses it directly, so
// that nothing substituted into a value later can add attributes.
// Attributes are separated by ',' (or ';'), or each introduced by '/'
// (OpenSSL's form); a backslash escapes the next character. The order
// written is the order encoded, most significant (e.g. C) first in the
// slash form and last in the comma form, as RFC 4514 and OpenSSL each
// define.
func ParseAttributes(s string) ([]Attribute, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	slashForm := strings.HasPrefix(s, "/")
	sep := ','
	if slashForm {
		s = s[1:]
		sep = '/'
	}
	parts, err := split(s, sep)
	if err != nil {
		return nil, err
	}
	var attrs []Attribute
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("distinguished name %q: %q is not TYPE=value", s, p)
		}
		k = strings.ToUpper(strings.TrimSpace(k))
		v = strings.TrimSpace(unescape(v))
		oid, known := attributeOIDs[k]
		if !known {
			return nil, fmt.Errorf("distinguished name %q: unknown attribute type %q", s, k)
		}
		if v == "" {
			return nil, fmt.Errorf("distinguished name %q: %s has an empty value", s, k)
		}
		attrs = append(attrs, Attribute{Type: oid, Name: k, Value: v})
	}
	if !slashForm {
		// RFC 4514 writes the most significant RDN last.
		for i, j := 0, len(attrs)-1; i < j; i, j = i+1, j-1 {
			attrs[i], attrs[j] = attrs[j], attrs[i]
		}
	}
	return attrs, nil
}

// IsIA5 reports whether an attribute type's values are IA5Strings (RFC 5280
// and RFC 4519: emailAddress and domainComponent).
func IsIA5(oid asn1.ObjectIdentifier) bool {
	return oid.Equal(attributeOIDs["E"]) || oid.Equal(attributeOIDs["DC"])
}

// Parse reads a distinguished name (see ParseAttributes for the forms).
func Parse(s string) (pkix.Name, error) {
	attrs, err := ParseAttributes(s)
	if err != nil || len(attrs) == 0 {
		return pkix.Name{}, err
	}
	var rdns pkix.RDNSequence
	for _, a := range attrs {
		var value any = a.Value
		if IsIA5(a.Type) {
			value = asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(a.Value)}
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: a.Type, Value: value}})
	}
	var name pkix.Name
	name.FillFromRDNSequence(&rdns)
	// ExtraNames keeps the order and the types pkix.Name has no field for.
	name.ExtraNames = nil
	for _, rdn := range rdns {
		name.ExtraNames = append(name.ExtraNames, rdn...)
	}
	return name, nil
}

// split cuts s at unescaped separators (sep, or ';' in the comma form).
func split(s string, sep rune) ([]string, error) {
	var parts []string
	var cur strings.Builder
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune('\\')
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case r == sep || (sep == ',' && r == ';'):
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	if escaped {
		return nil, fmt.Errorf("distinguished name %q ends with a lone backslash", s)
	}
	parts = append(parts, cur.String())
	return parts, nil
}

func unescape(v string) string {
	var b strings.Builder
	escaped := false
	for _, r := range v {
		if !escaped && r == '\\' {
			escaped = true
			continue
		}
		escaped = false
		b.WriteRune(r)
	}
	return b.String()
}

// typeNames are the names TypeName prints, one per type (the map above
// has aliases).
var typeNames = []string{"CN", "SERIALNUMBER", "C", "L", "ST", "STREET", "O", "OU", "TITLE", "POSTALCODE", "GN", "SN", "DC", "UID", "E"}

// TypeName returns the short name of an attribute type (CN, O, E, ...), or
// its dotted OID when it has none.
func TypeName(oid asn1.ObjectIdentifier) string {
	for _, n := range typeNames {
		if oid.Equal(attributeOIDs[n]) {
			return n
		}
	}
	return oid.String()
}
