package policy

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

var (
	// The Microsoft certificate template extensions (internal/ndes writes
	// the first): szOID_ENROLL_CERTTYPE_EXTENSION, szOID_CERTIFICATE_TEMPLATE.
	oidExtEnrollCertType      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2}
	oidExtCertificateTemplate = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 21, 7}

	oidExtKeyUsage             = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtendedKeyUsage     = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtBasicConstraints     = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtSubjectKeyIdentifier = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidAnyExtendedKeyUsage     = "2.5.29.37.0"
)

// extensionNames names extensions for messages, above all those a tenant
// might try (CA and AD CS mapping extensions).
var extensionNames = map[string]string{
	"2.5.29.14":               "subjectKeyIdentifier",
	"2.5.29.15":               "keyUsage",
	"2.5.29.17":               "subjectAltName",
	"2.5.29.19":               "basicConstraints",
	"2.5.29.30":               "nameConstraints",
	"2.5.29.31":               "cRLDistributionPoints",
	"2.5.29.32":               "certificatePolicies",
	"2.5.29.35":               "authorityKeyIdentifier",
	"2.5.29.37":               "extendedKeyUsage",
	"1.3.6.1.5.5.7.1.1":       "authorityInfoAccess",
	"1.3.6.1.5.5.7.1.24":      "TLS feature",
	"1.3.6.1.5.5.7.48.1.5":    "OCSP no check",
	"1.3.6.1.4.1.311.20.2":    "Microsoft certificate template name",
	"1.3.6.1.4.1.311.21.7":    "Microsoft certificate template",
	"1.3.6.1.4.1.311.21.10":   "Microsoft application policies",
	"1.3.6.1.4.1.311.25.2":    "Microsoft NTDS security identifier",
	"1.2.840.113549.1.9.15":   "S/MIME capabilities",
	"2.16.840.1.113730.1.1":   "Netscape certificate type",
	"1.3.6.1.4.1.11129.2.4.2": "certificate transparency SCTs",
}

func extensionName(oid string) string {
	if name, ok := extensionNames[oid]; ok {
		return name + " (" + oid + ")"
	}
	return oid
}

// extendedKeyUsages are the names spec.extendedKeyUsages takes, in the
// order the API lists them.
var extendedKeyUsages = []struct{ name, oid string }{
	{"ServerAuth", "1.3.6.1.5.5.7.3.1"},
	{"ClientAuth", "1.3.6.1.5.5.7.3.2"},
	{"CodeSigning", "1.3.6.1.5.5.7.3.3"},
	{"EmailProtection", "1.3.6.1.5.5.7.3.4"},
	{"IPSECEndSystem", "1.3.6.1.5.5.7.3.5"},
	{"IPSECTunnel", "1.3.6.1.5.5.7.3.6"},
	{"IPSECUser", "1.3.6.1.5.5.7.3.7"},
	{"TimeStamping", "1.3.6.1.5.5.7.3.8"},
	{"OCSPSigning", "1.3.6.1.5.5.7.3.9"},
	{"SmartcardLogon", "1.3.6.1.4.1.311.20.2.2"},
}

// ekuOID returns the dotted OID of a spec.extendedKeyUsages entry: a name,
// or a dotted OID as it is.
func ekuOID(entry string) string {
	for _, e := range extendedKeyUsages {
		if e.name == entry {
			return e.oid
		}
	}
	return entry
}

// ekuName is how a message shows an extended key usage.
func ekuName(oid string) string {
	for _, e := range extendedKeyUsages {
		if e.oid == oid {
			return e.name + " (" + oid + ")"
		}
	}
	if oid == oidAnyExtendedKeyUsage {
		return "anyExtendedKeyUsage (" + oid + ")"
	}
	return oid
}

// checkExtensions holds each requested extension against the profile; the
// subjectAltName is checkSANs' and passes here.
func checkExtensions(spec *scepv1alpha1.SCEPProfileSpec, exts []pkix.Extension) *Violation {
	for _, e := range exts {
		var v *Violation
		switch {
		case e.Id.Equal(oidExtSubjectAltName):
		case e.Id.Equal(oidExtKeyUsage):
			v = checkKeyUsage(spec, e)
		case e.Id.Equal(oidExtExtendedKeyUsage):
			v = checkExtendedKeyUsage(spec, e)
		case e.Id.Equal(oidExtBasicConstraints):
			v = checkBasicConstraints(e)
		case e.Id.Equal(oidExtSubjectKeyIdentifier):
			var ski []byte
			if rest, err := asn1.Unmarshal(e.Value, &ski); err != nil || len(rest) > 0 {
				v = violation("spec.request", "the CSR's subjectKeyIdentifier extension is malformed")
			}
		case e.Id.Equal(oidExtEnrollCertType), e.Id.Equal(oidExtCertificateTemplate):
			// Checked before allowedExtensions, which the API refuses to
			// list these in but may from before that rule: the template is
			// the profile's choice (certificateTemplate), never a tenant's.
			v = violation("spec.certificateTemplate", "the CSR names a certificate template (extension %s); a request may not choose its template: the profile's certificateTemplate is sent (csrMode Rebuild)", e.Id)
		default:
			if !allowedExtension(spec, e.Id.String()) {
				v = violation("spec.allowedExtensions", "the CSR asks for the extension %s, which the profile does not allow: remove it from the request, or add %s to spec.allowedExtensions if the CA should see it", extensionName(e.Id.String()), e.Id)
			}
		}
		if v != nil {
			return v
		}
	}
	return nil
}

func allowedExtension(spec *scepv1alpha1.SCEPProfileSpec, oid string) bool {
	for _, a := range spec.AllowedExtensions {
		if a == oid {
			return true
		}
	}
	return false
}

// basicConstraints is RFC 5280's BasicConstraints.
type basicConstraints struct {
	IsCA       bool `asn1:"optional"`
	MaxPathLen int  `asn1:"optional,default:-1"`
}

func checkBasicConstraints(e pkix.Extension) *Violation {
	var bc basicConstraints
	if rest, err := asn1.Unmarshal(e.Value, &bc); err != nil || len(rest) > 0 {
		return violation("spec.isCA", "the CSR's basicConstraints extension is malformed")
	}
	if bc.IsCA {
		return violation("spec.isCA", "the CSR asks for a CA certificate (basicConstraints CA:true); a SCEP profile issues end-entity certificates only: remove isCA from the Certificate")
	}
	return nil
}

func checkKeyUsage(spec *scepv1alpha1.SCEPProfileSpec, e pkix.Extension) *Violation {
	var bits asn1.BitString
	if rest, err := asn1.Unmarshal(e.Value, &bits); err != nil || len(rest) > 0 {
		return violation("spec.keyUsage", "the CSR's keyUsage extension is malformed")
	}
	var requested x509.KeyUsage
	for i := 0; i < 9; i++ {
		if bits.At(i) != 0 {
			requested |= 1 << uint(i)
		}
	}
	if ca := requested & (x509.KeyUsageCertSign | x509.KeyUsageCRLSign); ca != 0 {
		return violation("spec.keyUsage", "the CSR asks for key usages %s, which only CA certificates carry; a SCEP profile issues end-entity certificates only: remove cert sign and crl sign from the Certificate's usages", keyUsageNames(ca))
	}
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
	if requested&^allowed != 0 {
		return violation("spec.keyUsage", "the CSR asks for key usages %s; the profile allows %s (set the Certificate's usages)", keyUsageNames(requested), keyUsageNames(allowed))
	}
	return nil
}

func checkExtendedKeyUsage(spec *scepv1alpha1.SCEPProfileSpec, e pkix.Extension) *Violation {
	var oids []asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(e.Value, &oids); err != nil || len(rest) > 0 || len(oids) == 0 {
		return violation("spec.extendedKeyUsages", "the CSR's extendedKeyUsage extension is malformed")
	}
	allowed := map[string]bool{}
	var allowedNames []string
	for _, entry := range spec.ExtendedKeyUsages {
		allowed[ekuOID(entry)] = true
		allowedNames = append(allowedNames, entry)
	}
	for _, oid := range oids {
		id := oid.String()
		switch {
		case id == oidAnyExtendedKeyUsage:
			return violation("spec.extendedKeyUsages", "the CSR asks for anyExtendedKeyUsage, which would let the certificate serve any purpose; it is never issued: ask for the usages the workload needs")
		case allowed[id]:
		case len(allowedNames) == 0:
			return violation("spec.extendedKeyUsages", "the CSR asks for the extended key usage %s; the profile allows none: remove it from the Certificate's usages, or add it to spec.extendedKeyUsages", ekuName(id))
		default:
			return violation("spec.extendedKeyUsages", "the CSR asks for the extended key usage %s; the profile allows %s: remove it from the Certificate's usages, or add it to spec.extendedKeyUsages", ekuName(id), strings.Join(allowedNames, ", "))
		}
	}
	return nil
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
