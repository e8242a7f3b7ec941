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

// Parse reads a distinguished name. Attributes are separated by ',' (or
// ';'), or each introduced by '/' (OpenSSL's form); a backslash escapes the
// next character. The order written is the order encoded, most significant
// (e.g. C) first in the slash form and last in the comma form, as RFC 4514
// and OpenSSL each define.
func Parse(s string) (pkix.Name, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return pkix.Name{}, nil
	}
	slashForm := strings.HasPrefix(s, "/")
	sep := ','
	if slashForm {
		s = s[1:]
		sep = '/'
	}
	parts, err := split(s, sep)
	if err != nil {
		return pkix.Name{}, err
	}
	var rdns pkix.RDNSequence
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return pkix.Name{}, fmt.Errorf("distinguished name %q: %q is not TYPE=value", s, p)
		}
		k = strings.ToUpper(strings.TrimSpace(k))
		v = strings.TrimSpace(unescape(v))
		oid, known := attributeOIDs[k]
		if !known {
			return pkix.Name{}, fmt.Errorf("distinguished name %q: unknown attribute type %q", s, k)
		}
		if v == "" {
			return pkix.Name{}, fmt.Errorf("distinguished name %q: %s has an empty value", s, k)
		}
		var value any = v
		if k == "E" || k == "EMAILADDRESS" || k == "DC" {
			// RFC 5280 and RFC 4519 define these as IA5String.
			value = asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(v)}
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: value}})
	}
	if !slashForm {
		// RFC 4514 writes the most significant RDN last.
		for i, j := 0, len(rdns)-1; i < j; i, j = i+1, j-1 {
			rdns[i], rdns[j] = rdns[j], rdns[i]
		}
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
