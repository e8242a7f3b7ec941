package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/smallstep/scep/x509util"
)

var (
	oidExtSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 15}
	// oidUPN is Microsoft's User Principal Name otherName, which AD CS maps
	// to an account.
	oidUPN = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
)

// CSRTemplate describes a certificate request as MDM SCEP profiles do:
// subject, alternative names of four types, key usage and the challenge.
type CSRTemplate struct {
	// Subject is the requested subject; RawSubject, when set, wins and is
	// copied byte for byte (Rebuild keeps cert-manager's encoding).
	Subject    pkix.Name
	RawSubject []byte
	// DNSNames, EmailAddresses (RFC822Name), URIs, IPAddresses and UPNs
	// (Microsoft's otherName) go into one subjectAltName extension.
	DNSNames       []string
	EmailAddresses []string
	URIs           []*url.URL
	IPAddresses    []net.IP
	UPNs           []string
	// KeyUsage, when not zero, is requested as a critical extension.
	KeyUsage x509.KeyUsage
	// Extensions are copied into the request as they are, e.g. all of
	// cert-manager's requested extensions. A subjectAltName or keyUsage here
	// replaces the one the fields above would build.
	Extensions []pkix.Extension
	// ChallengePassword is written as the PKCS#9 challengePassword attribute,
	// which the CSR's own key signs; servers check it there.
	ChallengePassword string
}

// TemplateFromCSR returns a template that asks for the same subject and
// extensions as csr, byte for byte; set ChallengePassword and sign it with
// the key of csr to rebuild the request for a server with a challenge.
func TemplateFromCSR(csr *x509.CertificateRequest) CSRTemplate {
	return CSRTemplate{RawSubject: csr.RawSubject, Extensions: csr.Extensions}
}

// NewCSR builds a DER PKCS#10 request signed by key.
func NewCSR(t CSRTemplate, key crypto.Signer) ([]byte, error) {
	req := x509.CertificateRequest{Subject: t.Subject, RawSubject: t.RawSubject}
	var haveSAN, haveKU bool
	for _, e := range t.Extensions {
		haveSAN = haveSAN || e.Id.Equal(oidExtSubjectAltName)
		haveKU = haveKU || e.Id.Equal(oidExtKeyUsage)
	}
	req.ExtraExtensions = append(req.ExtraExtensions, t.Extensions...)
	if !haveSAN && (len(t.DNSNames)+len(t.EmailAddresses)+len(t.URIs)+len(t.IPAddresses)+len(t.UPNs)) > 0 {
		emptySubject := len(t.RawSubject) == 0 && len(t.Subject.ToRDNSequence()) == 0
		ext, err := SANExtension(t.DNSNames, t.EmailAddresses, t.URIs, t.IPAddresses, t.UPNs, emptySubject)
		if err != nil {
			return nil, err
		}
		req.ExtraExtensions = append(req.ExtraExtensions, ext)
	}
	if !haveKU && t.KeyUsage != 0 {
		ext, err := KeyUsageExtension(t.KeyUsage)
		if err != nil {
			return nil, err
		}
		req.ExtraExtensions = append(req.ExtraExtensions, ext)
	}
	var der []byte
	var err error
	if t.ChallengePassword == "" {
		der, err = x509.CreateCertificateRequest(rand.Reader, &req, key)
	} else {
		subject := req.RawSubject
		if len(subject) == 0 {
			if subject, err = asn1.Marshal(req.Subject.ToRDNSequence()); err != nil {
				return nil, fmt.Errorf("encoding the subject: %w", err)
			}
		}
		der, err = createCSRWithChallenge(subject, req.ExtraExtensions, t.ChallengePassword, key)
	}
	if err != nil {
		return nil, fmt.Errorf("creating the certificate request: %w", err)
	}
	return der, nil
}

// ChallengePassword returns the challengePassword attribute of a DER CSR,
// or "" when it has none.
func ChallengePassword(csr []byte) (string, error) {
	return x509util.ParseChallengePassword(csr)
}

// SANExtension encodes a subjectAltName extension; RFC 5280 asks for it to
// be critical when the subject is empty.
func SANExtension(dns, emails []string, uris []*url.URL, ips []net.IP, upns []string, critical bool) (pkix.Extension, error) {
	var names []asn1.RawValue
	for _, u := range upns {
		value, err := asn1.MarshalWithParams(u, "utf8")
		if err != nil {
			return pkix.Extension{}, err
		}
		// value is [0] EXPLICIT; a RawValue ignores field tags, so wrap it here.
		other, err := asn1.Marshal(otherName{oidUPN, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: value}})
		if err != nil {
			return pkix.Extension{}, err
		}
		// otherName is [0] IMPLICIT: keep the SEQUENCE's content, retag it.
		var seq asn1.RawValue
		if _, err := asn1.Unmarshal(other, &seq); err != nil {
			return pkix.Extension{}, err
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: seq.Bytes})
	}
	for _, e := range emails {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte(e)})
	}
	for _, d := range dns {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(d)})
	}
	for _, u := range uris {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u.String())})
	}
	for _, ip := range ips {
		b := ip.To4()
		if b == nil {
			b = ip.To16()
		}
		if b == nil {
			return pkix.Extension{}, fmt.Errorf("invalid IP address %v", ip)
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: b})
	}
	val, err := asn1.Marshal(names)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidExtSubjectAltName, Critical: critical, Value: val}, nil
}

// UPNs returns the Microsoft UPN otherNames of the subjectAltName among
// exts, which crypto/x509 does not parse.
func UPNs(exts []pkix.Extension) ([]string, error) {
	var out []string
	for _, e := range exts {
		if !e.Id.Equal(oidExtSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(e.Value, &names); err != nil || len(rest) > 0 {
			return nil, errors.New("malformed subjectAltName extension")
		}
		for _, n := range names {
			if n.Class != asn1.ClassContextSpecific || n.Tag != 0 {
				continue
			}
			var other otherName
			if _, err := asn1.UnmarshalWithParams(n.FullBytes, &other, "tag:0"); err != nil {
				return nil, fmt.Errorf("malformed otherName: %w", err)
			}
			if !other.TypeID.Equal(oidUPN) || other.Value.Class != asn1.ClassContextSpecific || other.Value.Tag != 0 {
				continue
			}
			var upn string
			if _, err := asn1.Unmarshal(other.Value.Bytes, &upn); err != nil {
				return nil, fmt.Errorf("malformed UPN: %w", err)
			}
			out = append(out, upn)
		}
	}
	return out, nil
}

// otherName is GeneralName's otherName (RFC 5280 section 4.2.1.6); Value
// holds the [0] EXPLICIT wrapper around the typed value.
type otherName struct {
	TypeID asn1.ObjectIdentifier
	Value  asn1.RawValue
}

// KeyUsageExtension encodes ku as a critical keyUsage extension.
func KeyUsageExtension(ku x509.KeyUsage) (pkix.Extension, error) {
	var b [2]byte
	bitLen := 0
	for i := 0; i < 9; i++ {
		if ku&(1<<uint(i)) != 0 {
			b[i/8] |= 0x80 >> uint(i%8)
			bitLen = i + 1
		}
	}
	n := 1
	if bitLen > 8 {
		n = 2
	}
	val, err := asn1.Marshal(asn1.BitString{Bytes: b[:n], BitLength: bitLen})
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: val}, nil
}
