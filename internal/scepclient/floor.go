package scepclient

import (
	"crypto"
	"fmt"

	"github.com/scep-operator/scep-operator/internal/scep"
)

// Floor is the weakest content cipher and digest a client may use. The
// strongest the server announces is always chosen (Capabilities.Algorithms);
// the floor only refuses what is left when that is too weak.
type Floor struct {
	// Cipher is the weakest content cipher; AES-128 and AES-256 count as
	// one step (SCEP's "AES" capability).
	Cipher scep.ContentCipher
	// Digest is the weakest digest.
	Digest crypto.Hash
	// CipherField and DigestField name where the floor comes from (e.g.
	// spec.cryptoFloor.contentEncryption), for the error that says what
	// would allow a server below it.
	CipherField, DigestField string
}

// DefaultFloor refuses single DES (and SCEP's fallback to it, when a server
// announces no cipher) and allows SHA-1 only as the best a server offers.
var DefaultFloor = Floor{Cipher: scep.CipherDES3CBC, Digest: crypto.SHA1}

// cipherRank orders ciphers by strength; both AES sizes are SCEP's "AES".
func cipherRank(c scep.ContentCipher) int {
	switch c {
	case scep.CipherDES3CBC:
		return 1
	case scep.CipherAES128CBC, scep.CipherAES256CBC:
		return 2
	}
	return 0
}

func digestRank(h crypto.Hash) int {
	switch h {
	case crypto.SHA256:
		return 1
	case crypto.SHA512:
		return 2
	}
	return 0
}

// BelowFloorError is a server whose best algorithms are weaker than the
// floor allows: nothing is sent to it.
type BelowFloorError struct {
	// Caps are the server's capabilities (the minimal set when it does
	// not answer GetCACaps).
	Caps scep.Capabilities
	// Chosen are the strongest algorithms it offers.
	Chosen scep.Algorithms
	// Floor is the floor they fall below.
	Floor Floor
}

// Error says what the server lacks and what would allow it.
func (e *BelowFloorError) Error() string {
	var lacks, allow string
	if cipherRank(e.Chosen.Cipher) < cipherRank(e.Floor.Cipher) {
		lacks = fmt.Sprintf("content encryption at least %s (it offers %s)", floorCipherName(e.Floor.Cipher), e.Chosen.Cipher)
		allow = fieldAllows(e.Floor.CipherField, cipherValue(e.Chosen.Cipher))
	}
	if digestRank(e.Chosen.Digest) < digestRank(e.Floor.Digest) {
		if lacks != "" {
			lacks += " and "
			allow += "; "
		}
		lacks += fmt.Sprintf("a digest at least %s (it offers %s)", e.Floor.Digest, e.Chosen.Digest)
		allow += fieldAllows(e.Floor.DigestField, digestValue(e.Chosen.Digest))
	}
	return fmt.Sprintf("the server's capabilities (%v; a server that does not answer GetCACaps is assumed to offer only DES3 and SHA-1) lack %s: have the server announce better (AES, SHA-256), or lower the floor: %s",
		e.Caps.Strings(), lacks, allow)
}

func fieldAllows(field, value string) string {
	if field == "" {
		return "allow " + value
	}
	return field + ": " + value + " allows it"
}

func floorCipherName(c scep.ContentCipher) string {
	if cipherRank(c) == 2 {
		return "AES"
	}
	return c.String()
}

// cipherValue and digestValue are the floor's API spellings.
func cipherValue(c scep.ContentCipher) string {
	switch cipherRank(c) {
	case 1:
		return "DES3"
	case 2:
		return "AES"
	}
	return "DES"
}

func digestValue(h crypto.Hash) string {
	switch h {
	case crypto.SHA256:
		return "SHA256"
	case crypto.SHA512:
		return "SHA512"
	}
	return "SHA1"
}

// Select chooses the strongest algorithms caps offer and refuses them with
// a *BelowFloorError when they fall below f.
func (f Floor) Select(caps scep.Capabilities) (scep.Algorithms, error) {
	a := caps.Algorithms()
	if cipherRank(a.Cipher) < cipherRank(f.Cipher) || digestRank(a.Digest) < digestRank(f.Digest) {
		return a, &BelowFloorError{Caps: caps, Chosen: a, Floor: f}
	}
	return a, nil
}
