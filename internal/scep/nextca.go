package scep

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/smallstep/pkcs7"
)

// NextCAContentType is the media type of a GetNextCACert answer (RFC 8894
// section 4.7.1).
const NextCAContentType = "application/x-x509-next-ca-cert"

// ParseNextCACert reads a GetNextCACert answer (RFC 8894 section 4.7.1): a
// SignedData, signed by the current CA or RA key, whose content is a
// degenerate certificates-only SignedData holding the next CA certificate
// and any next RA certificates. The signature must verify with one of
// current, the certificates the client trusts now (the pinned GetCACert
// answer); a certificate merely carried in the answer, or issued by the CA
// to anyone else (a workload's certificate), never vouches for it, so only
// whoever holds a trusted CA or RA key can announce a next CA. The answer
// must hold a CA certificate.
func ParseNextCACert(body []byte, current *CACerts) (*CACerts, error) {
	if current == nil || len(current.Certs) == 0 {
		return nil, errors.New("GetNextCACert: no current CA certificate to verify the answer with")
	}
	// The answer is DER, whose last byte may be any value, a white-space
	// byte too (about 1 signature in 43): the body is parsed as it came,
	// and only when that fails once more with surrounding white space
	// trimmed, for a server that ends its answer with a newline.
	outer, err := parsePKCS7(body)
	if trimmed := bytes.TrimSpace(body); err != nil && len(trimmed) != len(body) {
		if p7, terr := parsePKCS7(trimmed); terr == nil {
			outer, err = p7, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("GetNextCACert answer is not a PKCS#7 SignedData: %w", err)
	}
	if len(outer.Signers) == 0 {
		return nil, errors.New("GetNextCACert answer is not signed; RFC 8894 requires the current CA or RA to sign it")
	}
	if err := verifyWithOneOf(outer, current.All()); err != nil {
		return nil, fmt.Errorf("GetNextCACert answer: %w", err)
	}
	inner, err := parseDERCerts(outer.Content)
	if err != nil {
		return nil, fmt.Errorf("GetNextCACert answer's content is not a degenerate PKCS#7 of certificates: %w", err)
	}
	next := NewCACerts(inner)
	hasCA := false
	for _, cc := range next.Certs {
		hasCA = hasCA || cc.Role == RoleCA
	}
	if !hasCA {
		return nil, fmt.Errorf("GetNextCACert answer holds no CA certificate (it holds %d other certificate(s))", len(next.Certs))
	}
	return next, nil
}

// verifyWithOneOf checks every SignerInfo of p7 against one certificate of
// trusted, ignoring the certificates p7 carries.
func verifyWithOneOf(p7 *pkcs7.PKCS7, trusted []*x509.Certificate) (err error) {
	defer func() {
		if rec := recover(); rec != nil {
			err = fmt.Errorf("malformed signature: %v", rec)
		}
	}()
	var lastErr error
	for _, c := range trusted {
		p7.Certificates = []*x509.Certificate{c}
		if lastErr = p7.Verify(); lastErr == nil {
			return nil
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no certificate to verify with")
	}
	return fmt.Errorf("the signature does not verify against the CA/RA certificates trusted now (RFC 8894 requires the current CA or RA to sign the next CA): %w", lastErr)
}

// NewCAs returns the CA certificates of next that are not among current,
// the ones a rollover brings.
func NewCAs(next, current *CACerts) []*x509.Certificate {
	var out []*x509.Certificate
	for _, n := range next.Certs {
		if n.Role != RoleCA {
			continue
		}
		known := false
		if current != nil {
			for _, c := range current.Certs {
				if bytes.Equal(c.Raw, n.Raw) {
					known = true
					break
				}
			}
		}
		if !known {
			out = append(out, n.Certificate)
		}
	}
	return out
}

// Current drops the certificates that expired by now when a CA certificate
// of the answer is still valid: during a rollover a server may send the old
// and the new CA, and a client switches to the new one when the old one
// expires (RFC 8894 section 4.7). The expired ones are moved to Ignored.
// When nothing would remain valid, c is returned as it is, so the caller
// reports the expiry.
func (c *CACerts) Current(now time.Time) *CACerts {
	valid := func(cc CACert) bool { return !now.After(cc.NotAfter) }
	anyValidCA, anyExpired := false, false
	for _, cc := range c.Certs {
		if cc.Role == RoleCA && valid(cc) {
			anyValidCA = true
		}
		anyExpired = anyExpired || !valid(cc)
	}
	if !anyValidCA || !anyExpired {
		return c
	}
	out := &CACerts{Ignored: append([]*x509.Certificate(nil), c.Ignored...)}
	for _, cc := range c.Certs {
		if valid(cc) {
			out.Certs = append(out.Certs, cc)
		} else {
			out.Ignored = append(out.Ignored, cc.Certificate)
		}
	}
	return out
}
