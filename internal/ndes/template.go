package ndes

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"unicode/utf16"
)

// The two extensions by which a certificate request names an AD CS
// certificate template.
var (
	// OIDEnrollCertType is szOID_ENROLL_CERTTYPE_EXTENSION: the template's
	// name as a BMPString. This is the one TemplateExtension writes.
	OIDEnrollCertType = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2}
	// OIDCertificateTemplate is szOID_CERTIFICATE_TEMPLATE: the template's
	// OID with its major (and minor) version.
	OIDCertificateTemplate = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 21, 7}
)

// IsTemplateExtension reports whether oid names a certificate template.
func IsTemplateExtension(oid asn1.ObjectIdentifier) bool {
	return oid.Equal(OIDEnrollCertType) || oid.Equal(OIDCertificateTemplate)
}

// maxTemplateName bounds a template's name: AD's cn of a template is at most
// 64 characters.
const maxTemplateName = 64

// TemplateExtension is szOID_ENROLL_CERTTYPE_EXTENSION naming the AD CS
// template name (its cn, e.g. "WebServer-K8s", not its display name).
//
// The name form is chosen over szOID_CERTIFICATE_TEMPLATE because that one
// needs the template's OID and major version, which an admin must look up
// and which change whenever the template is superseded or its version
// bumped (the CA then refuses the request); AD CS's enterprise policy
// module resolves a name for templates of every schema version, and the
// name is what admins type in MDM profiles and certreq's
// CertificateTemplate attribute.
func TemplateExtension(name string) (pkix.Extension, error) {
	if name == "" {
		return pkix.Extension{}, errors.New("the certificate template name is empty")
	}
	if len([]rune(name)) > maxTemplateName {
		return pkix.Extension{}, fmt.Errorf("the certificate template name is longer than %d characters", maxTemplateName)
	}
	units := utf16.Encode([]rune(name))
	b := make([]byte, 0, 2*len(units))
	for _, u := range units {
		b = append(b, byte(u>>8), byte(u))
	}
	// BMPString (UNIVERSAL 30) holds UTF-16BE code units.
	value, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagBMPString, Bytes: b})
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: OIDEnrollCertType, Value: value}, nil
}

// TemplateName reads the name out of a szOID_ENROLL_CERTTYPE_EXTENSION
// value; ok is false for anything else.
func TemplateName(e pkix.Extension) (string, bool) {
	if !e.Id.Equal(OIDEnrollCertType) {
		return "", false
	}
	var raw asn1.RawValue
	if rest, err := asn1.Unmarshal(e.Value, &raw); err != nil || len(rest) > 0 || raw.Tag != asn1.TagBMPString || len(raw.Bytes)%2 != 0 {
		return "", false
	}
	units := make([]uint16, len(raw.Bytes)/2)
	for i := range units {
		units[i] = uint16(raw.Bytes[2*i])<<8 | uint16(raw.Bytes[2*i+1])
	}
	return string(utf16.Decode(units)), true
}
