package servertext

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		max  int
		want string
	}{
		{name: "plain", in: "template not allowed", want: "template not allowed"},
		{name: "control characters and new lines", in: "line one\r\nline\ttwo\x1b[31m red\x00", want: "line one line two [31m red"},
		{name: "bidi override (Trojan Source)", in: "abc\u202edcba", want: "abc dcba"},
		{name: "invalid UTF-8", in: "a\xff\xfeb", want: "a b"},
		{name: "non-ASCII printable kept", in: "Zertifikat für café ✓", want: "Zertifikat für café ✓"},
		{name: "runs of space collapse, ends trimmed", in: "  a   b  ", want: "a b"},
		{name: "cut at max with a mark", in: strings.Repeat("x", 300), max: 20, want: strings.Repeat("x", 17) + "…"},
		{name: "cut at a rune boundary", in: strings.Repeat("é", 20), max: 10, want: "ééé…"},
		{name: "default max", in: strings.Repeat("y", 1000), want: strings.Repeat("y", MaxFieldBytes-len("…")) + "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Clean(tc.in, tc.max)
			if got != tc.want {
				t.Errorf("Clean(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
			max := tc.max
			if max <= 0 {
				max = MaxFieldBytes
			}
			if len(got) > max || !utf8.ValidString(got) {
				t.Errorf("Clean = %q: %d bytes (max %d), valid UTF-8 %v", got, len(got), max, utf8.ValidString(got))
			}
		})
	}
}

func TestQuote(t *testing.T) {
	if got := Quote("say \"hi\"\n", 0); got != `"say \"hi\""` {
		t.Errorf("Quote = %s", got)
	}
}

func TestExcerpt(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{name: "IIS page", in: "<html><head><title>IIS 10.0 Detailed Error - 404.15 - Not Found</title></head><body>\n<h3>The request filtering module is configured to deny a request where the query string is too long.</h3></body></html>",
			want: `"IIS 10.0 Detailed Error - 404.15 - Not Found The request filtering module is configured to deny a request where the query string is too long."`},
		{name: "scripts and styles dropped", in: "<style>body{color:red}</style><script>alert(1)</script><p>Hello</p>", want: `"Hello"`},
		{name: "empty", in: "", want: ""},
		{name: "binary", in: "\x00\x01binary", want: ""},
		{name: "mostly invalid UTF-8", in: "\xff\xfe\xfd\xfc\xfb\xfa", want: ""},
		{name: "capped", in: strings.Repeat("a", 300), want: `"` + strings.Repeat("a", MaxExcerptBytes-len("…")) + `…"`},
		{name: "escape sequences neutralised", in: "bad\x1b]0;title\x07 page", want: `"bad ]0;title page"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Excerpt([]byte(tc.in)); got != tc.want {
				t.Errorf("Excerpt = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		body, ct, want string
	}{
		{"", "text/html", "an empty body"},
		{"<html><body>SECRET</body></html>", "", "an HTML page of 32 bytes"},
		{"<!DOCTYPE html><p>x</p>", "application/octet-stream", "an HTML page of 23 bytes"},
		{"whatever", "text/html; charset=utf-8", "an HTML page of 8 bytes"},
		{`{"token":"SECRET"}`, "application/json", "a JSON document of 18 bytes"},
		{"root:x:0:0:root:/root:/bin/bash\n", "", "a text answer of 32 bytes"},
		{"\x30\x82\x01\x00\xff\x00", "application/x-x509-ca-cert", "6 bytes of binary data"},
	} {
		if got := Describe([]byte(tc.body), tc.ct); got != tc.want {
			t.Errorf("Describe(%q, %q) = %q, want %q", tc.body, tc.ct, got, tc.want)
		}
	}
}

func TestContentType(t *testing.T) {
	for _, tc := range []struct{ in, media, says string }{
		{"", "", "no Content-Type"},
		{"text/html; charset=utf-8", "text/html", `Content-Type "text/html"`},
		{"Application/X-PKI-Message", "application/x-pki-message", `Content-Type "application/x-pki-message"`},
		{"text/html; SECRET=\"a\r\nb\"", "text/html", `Content-Type "text/html"`},
		{"bad type\x00 with SECRET; x=\x01", "", "an unusual Content-Type"},
		{"SECRET words here", "", "an unusual Content-Type"},
		{strings.Repeat("a", 100) + "/plain", "", "an unusual Content-Type"},
	} {
		if got := ContentType(tc.in); got != tc.media {
			t.Errorf("ContentType(%q) = %q, want %q", tc.in, got, tc.media)
		}
		if got := DescribeContentType(tc.in); got != tc.says {
			t.Errorf("DescribeContentType(%q) = %q, want %q", tc.in, got, tc.says)
		}
	}
}

func TestScrubError(t *testing.T) {
	// What net/http returns when something that is not an HTTP server
	// answers: its first line, quoted.
	banner := fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", fmt.Errorf("malformed HTTP response %q", "SSH-2.0-OpenSSH_9.6 SECRET-BANNER"))
	opErr := &net.OpError{Op: "read", Net: "tcp", Err: io.ErrUnexpectedEOF}
	for _, tc := range []struct {
		name  string
		err   error
		says  string
		omits string
	}{
		{name: "banner", err: banner, says: `malformed HTTP response "…" (the server did not answer in HTTP)`, omits: "SECRET"},
		{name: "MIME header", err: errors.New(`malformed MIME header line: "X-Leak: SECRET"`), says: `malformed MIME header line: "…"`, omits: "SECRET"},
		{name: "escaped quotes inside", err: fmt.Errorf("bad %q", `a"SECRET"b`), says: `bad "…"`, omits: "SECRET"},
		{name: "no quotes: kept", err: opErr, says: opErr.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ScrubError(tc.err)
			if !strings.Contains(got.Error(), tc.says) || (tc.omits != "" && strings.Contains(got.Error(), tc.omits)) {
				t.Errorf("ScrubError = %q, want it to say %q without %q", got, tc.says, tc.omits)
			}
			if !errors.Is(got, tc.err) {
				t.Error("the original error is no longer in the chain")
			}
		})
	}
	var ne net.Error
	if !errors.As(ScrubError(opErr), &ne) {
		t.Error("errors.As does not find the net.Error")
	}
	if ScrubError(nil) != nil {
		t.Error("ScrubError(nil) != nil")
	}
	long := ScrubError(errors.New(strings.Repeat("z", 5000)))
	if len(long.Error()) > maxErrorBytes {
		t.Errorf("scrubbed error of %d bytes", len(long.Error()))
	}
}

// FuzzClean: whatever a server sends, Clean gives valid, printable,
// single-line UTF-8 within the cap.
func FuzzClean(f *testing.F) {
	f.Add("failInfoText\r\n\x1b[2J", 128)
	f.Add("\u202e\xff\xfe", 3)
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = max%512 + 1
		if max < 1 {
			max = -max + 1
		}
		got := Clean(s, max)
		if len(got) > max && (max >= len("…") || got != "…") {
			t.Fatalf("Clean(%q, %d) = %q: %d bytes", s, max, got, len(got))
		}
		if !utf8.ValidString(got) || strings.ContainsAny(got, "\r\n\t\x00\x1b") {
			t.Fatalf("Clean(%q, %d) = %q", s, max, got)
		}
	})
}
