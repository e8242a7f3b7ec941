package profiles

import (
	"strings"
	"testing"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// TestTrustedPins: the rollover record adds its fingerprints only under the
// pins it was derived from (in any order or spelling), and never to an
// unpinned profile.
func TestTrustedPins(t *testing.T) {
	a, b := strings.Repeat("ab", 32), strings.Repeat("cd", 20)
	next := strings.Repeat("EF:", 31) + "EF"
	pins, err := Pins(&scepv1alpha1.SCEPProfileSpec{CAFingerprint: a, CAFingerprints: []string{"sha1:" + b}})
	if err != nil {
		t.Fatal(err)
	}
	digest := PinsDigest(pins)
	for _, tc := range []struct {
		name string
		spec scepv1alpha1.SCEPProfileSpec
		want int
	}{
		{name: "the same pins", spec: scepv1alpha1.SCEPProfileSpec{CAFingerprint: a, CAFingerprints: []string{"sha1:" + b}}, want: 3},
		{name: "the same pins, reordered and respelled", spec: scepv1alpha1.SCEPProfileSpec{CAFingerprints: []string{strings.ToUpper(b), "sha256:" + a}}, want: 3},
		{name: "other pins", spec: scepv1alpha1.SCEPProfileSpec{CAFingerprint: a}, want: 1},
		{name: "no pins", spec: scepv1alpha1.SCEPProfileSpec{}, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &scepv1alpha1.SCEPProfile{Spec: tc.spec}
			p.Status.CARollover = &scepv1alpha1.CARollover{PinsDigest: digest, Fingerprints: []string{next, "not hex"}}
			got, err := TrustedPins(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("%d pins, want %d", len(got), tc.want)
			}
		})
	}
	if _, err := Pins(&scepv1alpha1.SCEPProfileSpec{CAFingerprints: []string{a, "xyz"}}); err == nil || !strings.Contains(err.Error(), "spec.caFingerprints[1]") {
		t.Fatalf("a bad entry: %v, want an error naming spec.caFingerprints[1]", err)
	}
}
