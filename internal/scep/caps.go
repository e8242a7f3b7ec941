package scep

import (
	"bufio"
	"bytes"
	"crypto"
	"regexp"
	"sort"
	"strings"
)

// Capability is one keyword of a GetCACaps answer (RFC 8894 section 3.5.2).
type Capability string

// The capabilities RFC 8894 defines, plus the ones servers still send.
const (
	CapAES              Capability = "AES"
	CapDES3             Capability = "DES3"
	CapGetNextCACert    Capability = "GetNextCACert"
	CapPOSTPKIOperation Capability = "POSTPKIOperation"
	CapRenewal          Capability = "Renewal"
	CapSHA1             Capability = "SHA-1"
	CapSHA256           Capability = "SHA-256"
	CapSHA512           Capability = "SHA-512"
	CapSCEPStandard     Capability = "SCEPStandard"
	CapUpdate           Capability = "Update"
)

// Capabilities is the set of keywords a server announced. Lookups ignore
// case, as RFC 8894 asks clients to.
type Capabilities struct {
	set map[string]Capability
}

// MinimalCapabilities is what a client must assume of a server that does not
// answer GetCACaps (old NDES answers it with an error): GET only, SHA-1 and
// triple DES.
func MinimalCapabilities() Capabilities {
	return NewCapabilities(CapSHA1, CapDES3)
}

// NewCapabilities returns the set holding caps.
func NewCapabilities(caps ...Capability) Capabilities {
	c := Capabilities{set: make(map[string]Capability, len(caps))}
	for _, cp := range caps {
		if cp == "" {
			continue
		}
		c.set[strings.ToLower(string(cp))] = cp
	}
	return c
}

// Bounds on what of a GetCACaps answer is kept: the capabilities go into
// a profile's status, and the server may be anyone's.
const (
	maxCapabilities   = 32
	maxCapabilityLen  = 32
	capabilityPattern = `^[A-Za-z0-9][A-Za-z0-9._-]*$`
)

var capabilityWord = regexp.MustCompile(capabilityPattern)

// ParseCapabilities reads a GetCACaps body: one keyword a line, with LF or
// CRLF endings. Only words that can be keywords are kept (letters, digits,
// '.', '_' and '-', at most 32 characters; at most 32 of them), so that no
// other text of the answer reaches a status. An empty body yields the
// minimal set, as RFC 8894 asks.
func ParseCapabilities(body []byte) Capabilities {
	var caps []Capability
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() && len(caps) < maxCapabilities {
		for _, word := range strings.Fields(sc.Text()) {
			if len(word) <= maxCapabilityLen && capabilityWord.MatchString(word) && len(caps) < maxCapabilities {
				caps = append(caps, Capability(word))
			}
		}
	}
	if len(caps) == 0 {
		return MinimalCapabilities()
	}
	return NewCapabilities(caps...)
}

// Has reports whether the server announced cp.
func (c Capabilities) Has(cp Capability) bool {
	_, ok := c.set[strings.ToLower(string(cp))]
	return ok
}

// List returns the keywords as the server spelled them, sorted.
func (c Capabilities) List() []Capability {
	out := make([]Capability, 0, len(c.set))
	for _, cp := range c.set {
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(string(out[i])) < strings.ToLower(string(out[j])) })
	return out
}

// Strings returns List as plain strings, for status fields and printing.
func (c Capabilities) Strings() []string {
	list := c.List()
	out := make([]string, len(list))
	for i, cp := range list {
		out[i] = string(cp)
	}
	return out
}

// POST reports whether PKIOperation may be sent with HTTP POST.
// SCEPStandard implies it (RFC 8894 section 3.5.2).
func (c Capabilities) POST() bool {
	return c.Has(CapPOSTPKIOperation) || c.Has(CapSCEPStandard)
}

// Renewal reports whether the server accepts RenewalReq.
func (c Capabilities) Renewal() bool {
	return c.Has(CapRenewal) || c.Has(CapUpdate)
}

// Algorithms picks the strongest content cipher and digest the server
// announced: AES over triple DES over DES, SHA-512 over SHA-256 over SHA-1.
// SCEPStandard implies AES and SHA-256.
func (c Capabilities) Algorithms() Algorithms {
	a := Algorithms{Cipher: CipherDES, Digest: crypto.SHA1}
	switch {
	case c.Has(CapAES) || c.Has(CapSCEPStandard):
		a.Cipher = CipherAES256CBC
	case c.Has(CapDES3):
		a.Cipher = CipherDES3CBC
	}
	switch {
	case c.Has(CapSHA512):
		a.Digest = crypto.SHA512
	case c.Has(CapSHA256) || c.Has(CapSCEPStandard):
		a.Digest = crypto.SHA256
	}
	return a
}
