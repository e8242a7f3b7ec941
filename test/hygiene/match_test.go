package hygiene

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The one-pass matcher finds exactly the secrets a search of each form
// finds: overlapping secrets, a secret at the very end of the text, a
// secret whose prefix is another's, JSON-escaped and base64 forms.
func TestMatcherAgreesWithSearchingEachForm(t *testing.T) {
	secrets := []Secret{
		{Value: "hunter2-challenge"},
		{Value: "hunter2-challenge-longer"},
		{Value: "quote\"d-secret"},
		{Value: "abcdef"},
		{Value: "bcdefg"},
		{Value: "never-in-any-text"},
	}
	texts := []string{
		"",
		"abcde",
		"abcdefg",
		"log: hunter2-challenge-longer at the end: bcdefg",
		`{"msg":"quote\"d-secret"}`,
		"base64: " + forms("hunter2-challenge")[1] + " " + forms("abcdef")[1],
		"ends with hunter2-challenge",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		var b strings.Builder
		for range 40 {
			if r.IntN(4) == 0 {
				b.WriteString(secrets[r.IntN(len(secrets))].Value[:3+r.IntN(4)])
			} else {
				b.WriteByte("abcdefgh2-\" "[r.IntN(12)])
			}
		}
		texts = append(texts, b.String())
	}
	m := newMatcher(secrets)
	for _, text := range texts {
		var want []int
		for i, s := range secrets {
			if slices.ContainsFunc(forms(s.Value), func(f string) bool { return strings.Contains(text, f) }) {
				want = append(want, i)
			}
		}
		if got := m.find(text); !slices.Equal(got, want) && len(got)+len(want) > 0 {
			t.Errorf("in %q: found secrets %v, a search of each form finds %v", text, got, want)
		}
	}
}
