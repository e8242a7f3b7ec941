package policy

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
)

// csrContent is what Check reads from a CSR's raw encoding rather than from
// crypto/x509's view of it: crypto/x509 skips attributes it cannot parse,
// reads only the first value of extensionRequest and keeps no subject
// attribute it has no field for, while a CA may read all of them.
type csrContent struct {
	subject    []subjectAttribute
	extensions []pkix.Extension
}

var oidExtensionRequest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}

// attributeNames names the PKCS#10 attributes people meet in CSRs, with
// why they matter, for messages.
var attributeNames = map[string]string{
	"1.2.840.113549.1.9.7":   "challengePassword (the operator adds the profile's challenge itself, in csrMode Rebuild)",
	"1.2.840.113549.1.9.2":   "unstructuredName",
	"1.2.840.113549.1.9.8":   "unstructuredAddress",
	"1.3.6.1.4.1.311.13.2.1": "Microsoft enrollment name-value pairs (AD CS can read a SAN: pair as alternative names)",
	"1.3.6.1.4.1.311.13.2.2": "Microsoft enrollment CSP information",
	"1.3.6.1.4.1.311.13.2.3": "Microsoft OS version",
	"1.3.6.1.4.1.311.21.20":  "Microsoft client information",
	"1.3.6.1.4.1.311.2.1.14": "Microsoft certificate extensions (AD CS reads them like extensionRequest)",
}

// tbsRequest is PKCS#10's CertificationRequestInfo (RFC 2986, section 4.1).
type tbsRequest struct {
	Version       int
	Subject       asn1.RawValue
	PublicKey     asn1.RawValue
	RawAttributes []asn1.RawValue `asn1:"tag:0"`
}

// csrAttribute is a PKCS#10 Attribute.
type csrAttribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

func readCSR(csr *x509.CertificateRequest) (csrContent, *Violation) {
	malformed := func(what string) (csrContent, *Violation) {
		return csrContent{}, violation("spec.request", "the CSR cannot be read: %s", what)
	}
	var tbs tbsRequest
	if rest, err := asn1.Unmarshal(csr.RawTBSCertificateRequest, &tbs); err != nil || len(rest) > 0 {
		return malformed("its certificationRequestInfo is not DER")
	}
	var c csrContent
	var v *Violation
	if c.subject, v = parseSubject(tbs.Subject.FullBytes); v != nil {
		return csrContent{}, v
	}
	haveExtensions := false
	for _, raw := range tbs.RawAttributes {
		var a csrAttribute
		if rest, err := asn1.Unmarshal(raw.FullBytes, &a); err != nil || len(rest) > 0 {
			return malformed("an attribute is not DER")
		}
		if !a.Type.Equal(oidExtensionRequest) {
			what := a.Type.String()
			if name, ok := attributeNames[what]; ok {
				what += ", " + name
			}
			return csrContent{}, violation("spec.request", "the CSR carries the attribute %s; only extensionRequest (the requested extensions) is accepted: remove the attribute from the request", what)
		}
		if haveExtensions || len(a.Values) != 1 {
			return csrContent{}, violation("spec.request", "the CSR asks for extensions more than once (extensionRequest must be one attribute with one value); a CA may read any of them: send one")
		}
		haveExtensions = true
		if rest, err := asn1.Unmarshal(a.Values[0].FullBytes, &c.extensions); err != nil || len(rest) > 0 {
			return malformed("its extensionRequest is not a list of extensions")
		}
	}
	seen := map[string]bool{}
	for _, e := range c.extensions {
		id := e.Id.String()
		if seen[id] {
			return csrContent{}, violation("spec.request", "the CSR asks for the extension %s twice; a CA may honour either: send it once", extensionName(id))
		}
		seen[id] = true
	}
	return c, nil
}
