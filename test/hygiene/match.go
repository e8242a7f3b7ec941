package hygiene

import (
	"sort"
	"strings"
)

// matcher finds which of many secrets occur in a text in one pass over it.
// Searching each form of each secret separately (thousands of values, each
// a strings.Index over megabytes of logs) took the controllers package's
// sweep about 110 s of CPU; this takes about one map lookup per byte.
//
// Every form is at least MinLength bytes long, so it is found by its first
// MinLength bytes: the text's windows of that length are looked up in a map
// of those prefixes, and only a hit is compared in full. A hand-written
// index, not a multi-pattern library: it is a dozen lines, and the module
// has no such dependency.
type matcher struct {
	// byPrefix maps the first MinLength bytes of a form to the forms
	// starting with them.
	byPrefix map[string][]form
}

// form is one way a secret could appear (forms) and the secret's index.
type form struct {
	text   string
	secret int
}

// newMatcher indexes every form of every secret.
func newMatcher(secrets []Secret) *matcher {
	m := &matcher{byPrefix: map[string][]form{}}
	for i, s := range secrets {
		for _, f := range forms(s.Value) {
			if len(f) < MinLength {
				continue
			}
			m.byPrefix[f[:MinLength]] = append(m.byPrefix[f[:MinLength]], form{text: f, secret: i})
		}
	}
	return m
}

// find returns the indexes of the secrets any form of which occurs in
// text, in ascending order.
func (m *matcher) find(text string) []int {
	found := map[int]bool{}
	for i := 0; i+MinLength <= len(text); i++ {
		for _, f := range m.byPrefix[text[i:i+MinLength]] {
			if !found[f.secret] && strings.HasPrefix(text[i:], f.text) {
				found[f.secret] = true
			}
		}
	}
	out := make([]int, 0, len(found))
	for i := range found {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}
