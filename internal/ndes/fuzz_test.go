package ndes

import (
	"strings"
	"testing"
	"unicode/utf16"
)

// FuzzPage: any admin page, in any encoding, decodes and yields a password
// or an error; never a panic, and never a password with markup in it.
func FuzzPage(f *testing.F) {
	page := "<HTML><Body><P> The thumbprint (hash value) for the CA certificate is: <B> 3b6c8a1e 0f2d4c5b 6a7e8f90 1a2b3c4d </B> <P> The enrollment challenge password is: <B> 0A1B2C3D4E5F6A7B </B><P> This password can be used only once and will expire within 60 minutes.</Body></HTML>"
	le := func(s string) []byte {
		var b []byte
		for _, u := range utf16.Encode([]rune(s)) {
			b = append(b, byte(u), byte(u>>8))
		}
		return b
	}
	f.Add([]byte(page), "text/html")
	f.Add(le(page), "text/html")
	f.Add(append([]byte{0xff, 0xfe}, le("The password cache is full.")...), "text/html; charset=utf-16")
	f.Add([]byte("You do not have sufficient permission to enroll with SCEP."), "text/html; charset=utf-8")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		text, err := Decode(body, contentType)
		if err != nil {
			return
		}
		pw, err := ExtractPassword(text)
		if err == nil && (pw == "" || strings.ContainsAny(pw, "<>")) {
			t.Fatalf("extracted %q", pw)
		}
	})
}
