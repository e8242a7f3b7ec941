package scep

import (
	"bytes"
	"crypto"
	"crypto/md5"  //nolint:gosec // MDM profiles pin CAs by MD5 too; it is compared, never trusted alone.
	"crypto/sha1" //nolint:gosec // NDES prints SHA-1 thumbprints.
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// Fingerprint pins a CA certificate by the digest of its DER encoding, as
// MDM SCEP profiles do ("Thumbprint" or "Hash Value").
type Fingerprint struct {
	// Hash is MD5, SHA-1 or SHA-256.
	Hash crypto.Hash
	// Sum is the digest.
	Sum []byte
}

// ParseFingerprint reads a fingerprint written by a person: hex in either
// case, with or without colons, spaces or dashes (NDES prints groups of
// eight), optionally behind an algorithm prefix such as "sha256:". The
// algorithm follows from the length: 32 hex digits MD5, 40 SHA-1, 64 SHA-256.
func ParseFingerprint(s string) (Fingerprint, error) {
	in := strings.TrimSpace(s)
	var want crypto.Hash
	if i := strings.Index(in, ":"); i > 0 {
		switch strings.ToLower(strings.ReplaceAll(in[:i], "-", "")) {
		case "sha256":
			want, in = crypto.SHA256, in[i+1:]
		case "sha1":
			want, in = crypto.SHA1, in[i+1:]
		case "md5":
			want, in = crypto.MD5, in[i+1:]
		}
	}
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ':', ' ', '-', '\t', '\n', '\r':
			return -1
		}
		return r
	}, in)
	sum, err := hex.DecodeString(clean)
	if err != nil {
		return Fingerprint{}, fmt.Errorf("fingerprint %q is not hexadecimal", s)
	}
	var h crypto.Hash
	switch len(sum) {
	case md5.Size:
		h = crypto.MD5
	case sha1.Size:
		h = crypto.SHA1
	case sha256.Size:
		h = crypto.SHA256
	default:
		return Fingerprint{}, fmt.Errorf("fingerprint %q has %d hex digits; want 32 (MD5), 40 (SHA-1) or 64 (SHA-256)", s, len(clean))
	}
	if want != 0 && want != h {
		return Fingerprint{}, fmt.Errorf("fingerprint %q is labelled %v but has the length of %v", s, want, h)
	}
	return Fingerprint{Hash: h, Sum: sum}, nil
}

// FingerprintOf returns cert's fingerprint with hash h (MD5, SHA-1 or SHA-256).
func FingerprintOf(cert *x509.Certificate, h crypto.Hash) Fingerprint {
	var sum []byte
	switch h {
	case crypto.MD5:
		s := md5.Sum(cert.Raw) //nolint:gosec // see import
		sum = s[:]
	case crypto.SHA1:
		s := sha1.Sum(cert.Raw) //nolint:gosec // see import
		sum = s[:]
	default:
		h = crypto.SHA256
		s := sha256.Sum256(cert.Raw)
		sum = s[:]
	}
	return Fingerprint{Hash: h, Sum: sum}
}

// Matches reports whether cert has this fingerprint.
func (f Fingerprint) Matches(cert *x509.Certificate) bool {
	if cert == nil || len(f.Sum) == 0 {
		return false
	}
	return bytes.Equal(FingerprintOf(cert, f.Hash).Sum, f.Sum)
}

// Hex is the digest as upper-case hex with colons, as openssl prints it.
func (f Fingerprint) Hex() string {
	var b strings.Builder
	for i, c := range f.Sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// String reads like "SHA-256 AB:CD:...".
func (f Fingerprint) String() string {
	if len(f.Sum) == 0 {
		return ""
	}
	return f.Hash.String() + " " + f.Hex()
}
