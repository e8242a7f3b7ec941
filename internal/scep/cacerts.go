package scep

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/scep-operator/scep-operator/internal/servertext"
)

// Role is what a certificate of a GetCACert answer is for.
type Role string

// The roles a GetCACert answer can hold. NDES sends a CA, an RA signing
// ("Enrollment Agent") and an RA encryption ("CEP Encryption") certificate;
// MicroMDM sends its CA alone; step-ca sends its chain and a decrypter.
const (
	// RoleCA is a certificate authority (basicConstraints CA:TRUE).
	RoleCA Role = "CA"
	// RoleRA is a registration authority certificate that both signs and
	// decrypts (or whose key usage does not restrict it).
	RoleRA Role = "RA"
	// RoleRASigning is an RA certificate that may only sign (digitalSignature).
	RoleRASigning Role = "RASigning"
	// RoleRAEncryption is an RA certificate that may only decrypt (keyEncipherment).
	RoleRAEncryption Role = "RAEncryption"
)

// ParseCACerts reads a GetCACert answer. The shape is decided by the body,
// not by contentType (servers send wrong types): a single DER certificate, a
// degenerate PKCS#7 SignedData holding certificates, or PEM holding either.
// contentType is only used to make errors clearer. The structure is
// bounded (CheckBER) before any PKCS#7 parse.
func ParseCACerts(body []byte, contentType string) (*CACerts, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errors.New("GetCACert answer is empty")
	}
	var certs []*x509.Certificate
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		rest := trimmed
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			got, err := parseDERCerts(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("GetCACert PEM block %s: %w", servertext.Quote(block.Type, 40), err)
			}
			certs = append(certs, got...)
		}
	} else {
		got, err := parseDERCerts(body)
		if err != nil {
			return nil, fmt.Errorf("GetCACert answer is neither a DER certificate nor a PKCS#7 bundle: %w", err)
		}
		certs = got
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("GetCACert answer (Content-Type %q) holds no certificate", servertext.ContentType(contentType))
	}
	return NewCACerts(certs), nil
}

func parseDERCerts(der []byte) ([]*x509.Certificate, error) {
	if cert, err := x509.ParseCertificate(der); err == nil {
		return []*x509.Certificate{cert}, nil
	}
	p7, err := parsePKCS7(der)
	if err != nil {
		return nil, err
	}
	if len(p7.Certificates) == 0 {
		return nil, errors.New("PKCS#7 bundle holds no certificate")
	}
	return p7.Certificates, nil
}

// CACert is one certificate of a GetCACert answer and its role.
type CACert struct {
	*x509.Certificate
	Role Role
}

// CACerts is a classified GetCACert answer, in the order the server sent it.
type CACerts struct {
	// Certs are the certificates that may be used: all of them, or after
	// Pin, those the pinned certificate vouches for.
	Certs []CACert
	// Ignored are certificates Pin dropped because they do not chain to
	// (or above) the pinned certificate.
	Ignored []*x509.Certificate
}

// NewCACerts classifies certs.
func NewCACerts(certs []*x509.Certificate) *CACerts {
	out := &CACerts{Certs: make([]CACert, 0, len(certs))}
	for _, c := range certs {
		out.Certs = append(out.Certs, CACert{Certificate: c, Role: classify(c)})
	}
	return out
}

func classify(c *x509.Certificate) Role {
	if c.BasicConstraintsValid && c.IsCA {
		return RoleCA
	}
	sign := c.KeyUsage&x509.KeyUsageDigitalSignature != 0
	enc := c.KeyUsage&(x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment) != 0
	switch {
	case sign && !enc:
		return RoleRASigning
	case enc && !sign:
		return RoleRAEncryption
	}
	return RoleRA
}

// All returns the certificates without their roles.
func (c *CACerts) All() []*x509.Certificate {
	out := make([]*x509.Certificate, len(c.Certs))
	for i, cc := range c.Certs {
		out[i] = cc.Certificate
	}
	return out
}

// Issuer returns the CA that issues end-entity certificates: the CA
// certificate that signed the RA certificates, else the CA that issued no
// other CA of the answer (the bottom of the chain). It is nil when the
// answer holds no CA certificate.
func (c *CACerts) Issuer() *x509.Certificate {
	var cas []*x509.Certificate
	for _, cc := range c.Certs {
		if cc.Role == RoleCA {
			cas = append(cas, cc.Certificate)
		}
	}
	for _, cc := range c.Certs {
		if cc.Role == RoleCA {
			continue
		}
		for _, ca := range cas {
			if cc.CheckSignatureFrom(ca) == nil {
				return ca
			}
		}
	}
	for _, ca := range cas {
		issuesAnother := false
		for _, other := range cas {
			if other != ca && !bytes.Equal(other.Raw, ca.Raw) && other.CheckSignatureFrom(ca) == nil {
				issuesAnother = true
				break
			}
		}
		if !issuesAnother {
			return ca
		}
	}
	if len(cas) > 0 {
		return cas[0]
	}
	return nil
}

// Recipient picks the certificate a request is encrypted to: an RSA RA
// certificate allowed to encipher keys first (encrypting to NDES's CA or
// signing certificate fails with 0x80090005), else the RSA issuing CA, else
// any RSA CA.
func (c *CACerts) Recipient() (*x509.Certificate, error) {
	isRSA := func(x *x509.Certificate) bool { _, ok := x.PublicKey.(*rsa.PublicKey); return ok }
	for _, want := range []Role{RoleRAEncryption, RoleRA} {
		for _, cc := range c.Certs {
			if cc.Role == want && isRSA(cc.Certificate) {
				return cc.Certificate, nil
			}
		}
	}
	if iss := c.Issuer(); iss != nil && isRSA(iss) {
		return iss, nil
	}
	for _, cc := range c.Certs {
		if cc.Role == RoleCA && isRSA(cc.Certificate) {
			return cc.Certificate, nil
		}
	}
	var seen []string
	for i, cc := range c.Certs {
		if i == maxSeenListed {
			seen = append(seen, fmt.Sprintf("and %d more", len(c.Certs)-i))
			break
		}
		seen = append(seen, fmt.Sprintf("%s (%s, %T)", servertext.Quote(cc.Subject.String(), servertext.MaxFieldBytes), cc.Role, cc.PublicKey))
	}
	return nil, fmt.Errorf("%w among the GetCACert certificates: %s", errNoRSARecipient, strings.Join(seen, "; "))
}

// Pin keeps the certificates the pinned one vouches for: the certificate
// matching fp, the CAs above it in the answer, and every certificate that
// chains to it through the answer. Anything else is moved to Ignored, so a
// man in the middle cannot add a signer of its own next to a genuine CA.
// A mismatch is a *FingerprintMismatchError.
func (c *CACerts) Pin(fp Fingerprint) (*CACerts, error) {
	return c.PinAny(fp)
}

// PinAny is Pin for several pins (the old and the new CA during a
// rollover): it keeps what any matching pin vouches for, and fails with a
// *FingerprintMismatchError only when no pin matches.
func (c *CACerts) PinAny(fps ...Fingerprint) (*CACerts, error) {
	trusted := make([]bool, len(c.Certs))
	matched := false
	for i, cc := range c.Certs {
		for _, fp := range fps {
			if fp.Matches(cc.Certificate) {
				trusted[i], matched = true, true
				break
			}
		}
	}
	if !matched {
		err := &FingerprintMismatchError{Wants: fps}
		if len(fps) > 0 {
			err.Want = fps[0]
		}
		for _, cc := range c.Certs {
			err.Seen = append(err.Seen, SeenFingerprint{Subject: servertext.Clean(cc.Subject.String(), servertext.MaxFieldBytes), Role: cc.Role, Fingerprint: FingerprintOf(cc.Certificate, err.Want.Hash)})
		}
		return nil, err
	}
	for changed := true; changed; {
		changed = false
		for i, cc := range c.Certs {
			if trusted[i] {
				continue
			}
			for j, t := range c.Certs {
				if !trusted[j] {
					continue
				}
				// Below a trusted certificate, or the issuer of one.
				if cc.CheckSignatureFrom(t.Certificate) == nil || t.CheckSignatureFrom(cc.Certificate) == nil {
					trusted[i], changed = true, true
					break
				}
			}
		}
	}
	out := &CACerts{}
	for i, cc := range c.Certs {
		if trusted[i] {
			out.Certs = append(out.Certs, cc)
		} else {
			out.Ignored = append(out.Ignored, cc.Certificate)
		}
	}
	return out, nil
}

// maxSeenListed bounds the certificates a mismatch report lists: a server
// may send any number.
const maxSeenListed = 8

// SeenFingerprint is one certificate the server sent, for a mismatch report.
// Subject is cleaned and capped (servertext.Clean).
type SeenFingerprint struct {
	Subject     string
	Role        Role
	Fingerprint Fingerprint
}

// FingerprintMismatchError says that no certificate of the GetCACert
// answer has the pinned fingerprint. Nothing may be sent to such a server.
type FingerprintMismatchError struct {
	// Want is the first pin; Wants all of them.
	Want  Fingerprint
	Wants []Fingerprint
	Seen  []SeenFingerprint
}

func (e *FingerprintMismatchError) Error() string {
	var b strings.Builder
	if len(e.Wants) > 1 {
		pins := make([]string, len(e.Wants))
		for i, w := range e.Wants {
			pins[i] = w.String()
		}
		fmt.Fprintf(&b, "CA fingerprint mismatch: pinned %s, but the server sent ", strings.Join(pins, " or "))
	} else {
		fmt.Fprintf(&b, "CA fingerprint mismatch: pinned %s, but the server sent ", e.Want)
	}
	for i, s := range e.Seen {
		if i == maxSeenListed {
			fmt.Fprintf(&b, " and %d more", len(e.Seen)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q (%s) %s", s.Subject, s.Role, s.Fingerprint.Hex())
	}
	b.WriteString("; check the profile's CA fingerprint, or whether the server's CA was renewed")
	return b.String()
}
