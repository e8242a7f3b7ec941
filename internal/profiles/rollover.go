package profiles

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// MaxRolloverPins bounds the next CA fingerprints a profile's status keeps.
const MaxRolloverPins = 4

// Pinned reports whether the spec pins the CA (caFingerprint or
// caFingerprints).
func Pinned(spec *scepv1alpha1.SCEPProfileSpec) bool {
	if strings.TrimSpace(spec.CAFingerprint) != "" {
		return true
	}
	return slices.ContainsFunc(spec.CAFingerprints, func(s string) bool { return strings.TrimSpace(s) != "" })
}

// Pins returns the profile's pins, caFingerprint first; none when the
// profile pins nothing.
func Pins(spec *scepv1alpha1.SCEPProfileSpec) ([]scep.Fingerprint, error) {
	var pins []scep.Fingerprint
	if strings.TrimSpace(spec.CAFingerprint) != "" {
		fp, err := scep.ParseFingerprint(spec.CAFingerprint)
		if err != nil {
			return nil, &SpecError{Field: "spec.caFingerprint", Err: err}
		}
		pins = append(pins, fp)
	}
	for i, s := range spec.CAFingerprints {
		if strings.TrimSpace(s) == "" {
			continue
		}
		fp, err := scep.ParseFingerprint(s)
		if err != nil {
			return nil, &SpecError{Field: fmt.Sprintf("spec.caFingerprints[%d]", i), Err: err}
		}
		pins = append(pins, fp)
	}
	return pins, nil
}

// PinsDigest identifies a set of pins, whatever their order and spelling:
// the SHA-256 (hex) of the sorted "hash:sum" lines.
func PinsDigest(pins []scep.Fingerprint) string {
	lines := make([]string, len(pins))
	for i, p := range pins {
		lines[i] = p.Hash.String() + ":" + hex.EncodeToString(p.Sum)
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(slices.Compact(lines), "\n")))
	return hex.EncodeToString(sum[:])
}

// TrustedPins returns the pins a GetCACert answer is checked against: the
// spec's, plus the next CA certificates that a certificate trusted by those
// very pins announced (status.caRollover), so that a pinned profile follows
// a rollover without an admin edit. A rollover record made under other pins
// (the admin edited them since) is ignored. An unpinned profile gets none.
func TrustedPins(p scepv1alpha1.Profile) ([]scep.Fingerprint, error) {
	pins, err := Pins(p.GetSpec())
	if err != nil || len(pins) == 0 {
		return pins, err
	}
	ro := p.GetStatus().CARollover
	if ro == nil || ro.PinsDigest != PinsDigest(pins) {
		return pins, nil
	}
	for _, s := range ro.Fingerprints {
		fp, err := scep.ParseFingerprint(s)
		if err != nil || fp.Hash != crypto.SHA256 {
			// Only the operator writes the status; a value it cannot
			// read is skipped rather than trusted.
			continue
		}
		pins = append(pins, fp)
	}
	return pins, nil
}

// NextCA asks p's server for its next CA certificates (GetNextCACert) and
// verifies them against info, the answer trusted now. It returns
// scepclient.ErrNoNextCA when the server does not announce the operation.
func (r *Registry) NextCA(ctx context.Context, p scepv1alpha1.Profile, info *scepclient.ServerInfo) (*scep.CACerts, error) {
	c, err := r.Client(ctx, p)
	if err != nil {
		return nil, err
	}
	return c.GetNextCACert(ctx, info)
}
