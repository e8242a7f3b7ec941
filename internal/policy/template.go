package policy

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// maxVariableLen bounds a variable's value: the Kubernetes names are far
// shorter, and a longer one (an annotation can hold 256 KiB) only ever
// serves to make matching slow.
const maxVariableLen = 1024

var variablePattern = regexp.MustCompile(`%([A-Za-z]*)%`)

// A template is a profile value with %variable% references, e.g.
// "%certificatename%.%namespace%.svc.%domainname%": its literal text is a
// glob where "*" matches any run of characters, and each variable's value
// matches only itself, whatever characters it holds. A subject template is
// first parsed as a DN (internal/dn), and each attribute value is a
// template, so that a value never adds attributes.
type template struct {
	text  string
	parts []templatePart
}

// templatePart is literal text (variable == "") or one variable reference.
type templatePart struct {
	literal  string
	variable string
}

func parseTemplate(s string) template {
	t := template{text: s}
	last := 0
	for _, m := range variablePattern.FindAllStringSubmatchIndex(s, -1) {
		if m[0] > last {
			t.parts = append(t.parts, templatePart{literal: s[last:m[0]]})
		}
		t.parts = append(t.parts, templatePart{variable: strings.ToLower(s[m[2]:m[3]])})
		last = m[1]
	}
	if last < len(s) {
		t.parts = append(t.parts, templatePart{literal: s[last:]})
	}
	return t
}

// variables returns the names t uses, sorted, each once.
func (t template) variables() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range t.parts {
		if p.literal == "" && !seen[p.variable] {
			seen[p.variable] = true
			out = append(out, p.variable)
		}
	}
	sort.Strings(out)
	return out
}

// uses reports whether t references the variable name.
func (t template) uses(name string) bool {
	for _, p := range t.parts {
		if p.literal == "" && p.variable == name {
			return true
		}
	}
	return false
}

// hasGlob reports whether t's literal text holds a "*".
func (t template) hasGlob() bool {
	for _, p := range t.parts {
		if strings.Contains(p.literal, "*") {
			return true
		}
	}
	return false
}

// A pattern is a template bound to one request's values: the texts between
// the template's stars, each matched literally. It is matched without
// regular expressions, so no value can change what it means.
type pattern struct {
	// segments has one more element than the template has stars.
	segments []string
	// fold compares ASCII letters without case (DNS names, email
	// addresses); other characters always compare exactly.
	fold bool
}

// bind puts vars' values into t. A variable without a value is an error
// saying where the value comes from, so that a template never silently
// matches less or more.
func (t template) bind(vars Variables, fold bool) (pattern, error) {
	var missing []string
	segments := []string{""}
	for _, p := range t.parts {
		if p.literal != "" {
			pieces := strings.Split(p.literal, "*")
			segments[len(segments)-1] += pieces[0]
			segments = append(segments, pieces[1:]...)
			continue
		}
		v, ok := vars[p.variable]
		switch {
		case !ok || v == "":
			missing = append(missing, p.variable)
			continue
		case len(v) > maxVariableLen:
			return pattern{}, fmt.Errorf("the value of %%%s%% is longer than %d characters", p.variable, maxVariableLen)
		}
		segments[len(segments)-1] += v
	}
	if len(missing) > 0 {
		return pattern{}, missingError(missing)
	}
	if fold {
		for i, s := range segments {
			segments[i] = asciiLower(s)
		}
	}
	return pattern{segments: segments, fold: fold}, nil
}

// missingError explains why variables have no value for this request.
func missingError(names []string) error {
	seen := map[string]bool{}
	ownerSaid := false
	var refs, why []string
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		refs = append(refs, "%"+n+"%")
		switch n {
		case "certificatename", "devicename":
			if !ownerSaid {
				ownerSaid = true
				why = append(why, "%certificatename% and %devicename% have a value only for a request made by a cert-manager Certificate (the request's controller ownerReference names it); make the request through a Certificate")
			}
		case "email":
			why = append(why, fmt.Sprintf("%%email%% comes from the annotation %s, which the Certificate does not set", EmailAnnotation))
		case "username":
			why = append(why, "%username% comes from the request's spec.username, which is empty")
		}
	}
	msg := strings.Join(refs, ", ") + " has no value for this request"
	if len(refs) > 1 {
		msg = strings.Join(refs, ", ") + " have no value for this request"
	}
	if len(why) > 0 {
		msg += ": " + strings.Join(why, "; ")
	}
	return fmt.Errorf("%s", msg)
}

// match reports whether s fits the pattern.
func (p pattern) match(s string) bool {
	if len(p.segments) == 0 {
		return false
	}
	if p.fold {
		s = asciiLower(s)
	}
	if len(p.segments) == 1 {
		return s == p.segments[0]
	}
	first, last := p.segments[0], p.segments[len(p.segments)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	// The leftmost place of each middle text leaves the most room for the
	// next: with "*" the only wildcard, the first fit is as good as any.
	for _, seg := range p.segments[1 : len(p.segments)-1] {
		i := strings.Index(s, seg)
		if i < 0 {
			return false
		}
		s = s[i+len(seg):]
	}
	return true
}

// describe is the template with the values its variables have for this
// request, for messages: `"CN=%certificatename%" (certificatename "web")`.
func (t template) describe(vars Variables) string {
	out := fmt.Sprintf("%q", t.text)
	var vals []string
	for _, n := range t.variables() {
		if v, ok := vars[n]; ok && v != "" {
			vals = append(vals, n+" "+quote(v))
		}
	}
	if len(vals) > 0 {
		out += " (" + strings.Join(vals, ", ") + ")"
	}
	return out
}

// asciiLower lower-cases A-Z only: Unicode case folding would let
// characters such as the Kelvin sign match an ASCII letter.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
