package ndes

import (
	"crypto/x509"
	"encoding/asn1"
	"slices"
	"unicode/utf16"
)

// DefaultTemplate is what NDES's setup writes into all three template
// registry values.
const DefaultTemplate = "IPSECIntermediateOffline"

// RegistryTemplates are NDES's template values under
// HKLM\SOFTWARE\Microsoft\Cryptography\MSCEP. NDES picks one by the key
// usage the request asks for and submits the request to the CA naming it;
// empty values mean DefaultTemplate.
type RegistryTemplates struct {
	// Signature is SignatureTemplate: digitalSignature only.
	Signature string
	// Encryption is EncryptionTemplate: keyEncipherment only.
	Encryption string
	// GeneralPurpose is GeneralPurposeTemplate: both, or neither.
	GeneralPurpose string
}

// Choose returns the template NDES submits a request asking for ku with.
func (r RegistryTemplates) Choose(ku x509.KeyUsage) string {
	sign := ku&x509.KeyUsageDigitalSignature != 0
	enc := ku&x509.KeyUsageKeyEncipherment != 0
	name := r.GeneralPurpose
	switch {
	case sign && !enc:
		name = r.Signature
	case enc && !sign:
		name = r.Encryption
	}
	if name == "" {
		name = DefaultTemplate
	}
	return name
}

// Enrollment is what the emulator saw of one PKCSReq whose challenge it
// accepted.
type Enrollment struct {
	// Subject is the CSR's subject.
	Subject string
	// KeyUsage is the key usage the CSR asked for (0 without the
	// extension).
	KeyUsage x509.KeyUsage
	// Template is the registry's choice by KeyUsage: the template NDES
	// would submit the request with.
	Template string
	// RequestedTemplate is the name in the CSR's template extension
	// (szOID_ENROLL_CERTTYPE_EXTENSION), "" without one. Stock NDES does
	// not use it to choose.
	RequestedTemplate string
}

// Enrollments returns the PKCSReqs accepted so far, oldest first (none
// under NoEnforcePassword, where the challenge hook that records them does
// not run).
func (s *Server) Enrollments() []Enrollment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.enrollments)
}

// recordEnrollmentLocked notes csr's key usage and template; s.mu is held.
func (s *Server) recordEnrollmentLocked(o Options, csr *x509.CertificateRequest) {
	if csr == nil {
		return
	}
	e := Enrollment{Subject: csr.Subject.String()}
	for _, x := range csr.Extensions {
		switch x.Id.String() {
		case "2.5.29.15":
			var bits asn1.BitString
			if _, err := asn1.Unmarshal(x.Value, &bits); err == nil {
				for i := 0; i < bits.BitLength && i < 9; i++ {
					if bits.At(i) == 1 {
						e.KeyUsage |= 1 << i
					}
				}
			}
		case "1.3.6.1.4.1.311.20.2":
			var raw asn1.RawValue
			if _, err := asn1.Unmarshal(x.Value, &raw); err == nil && raw.Tag == asn1.TagBMPString {
				var units []uint16
				for b := raw.Bytes; len(b) >= 2; b = b[2:] {
					units = append(units, uint16(b[0])<<8|uint16(b[1]))
				}
				e.RequestedTemplate = string(utf16.Decode(units))
			}
		}
	}
	e.Template = o.Templates.Choose(e.KeyUsage)
	s.enrollments = append(s.enrollments, e)
}
