// Package servertext turns what a remote server sent (an error page, a
// failInfoText, a header, a Go error that quotes a malformed answer) into
// text the operator may show. A namespaced SCEPProfile may point at any
// host, so anything a server wrote is an attacker's words until proven
// otherwise: it never reaches a condition, an Event or an annotation
// verbatim. What does reach them is described (Describe), or cleaned and
// capped (Clean). Excerpt is for operator logs at debug verbosity and for
// scepctl's own terminal.
package servertext

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Caps on server text, in bytes.
const (
	// MaxFieldBytes bounds a server string copied into a status, an Event
	// or an annotation (failInfoText, a transactionID).
	MaxFieldBytes = 128
	// MaxExcerptBytes bounds a body excerpt kept for debug logs.
	MaxExcerptBytes = 200
)

// Clean returns s as one line of printable text of at most max bytes:
// invalid UTF-8 and every control or non-printing character become a
// space, runs of white space one space, and a longer text is cut at a
// character boundary and ends in "…" (within max). max <= 0 means
// MaxFieldBytes.
func Clean(s string, max int) string {
	if max <= 0 {
		max = MaxFieldBytes
	}
	// Bound the work before cleaning: a few bytes per kept byte is enough
	// for the collapsing below.
	if len(s) > 4*max+16 {
		s = s[:4*max+16]
	}
	var b strings.Builder
	space := false
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		if r == utf8.RuneError && size <= 1 || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return truncate(b.String(), max)
}

// truncate cuts s to at most max bytes at a rune boundary, marking the cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const mark = "…"
	cut := max - len(mark)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimRight(s[:cut], " ") + mark
}

// Quote is Clean(s, max) in double quotes, escaped as Go does (%q): the form
// in which server text enters a message, so that a reader sees where the
// server's words begin and end.
func Quote(s string, max int) string {
	return strconv.Quote(Clean(s, max))
}

var (
	scriptOrStyle = regexp.MustCompile(`(?is)<(script|style)\b.*?</(script|style)\s*>`)
	anyTag        = regexp.MustCompile(`(?s)<[^>]*>`)
)

// Excerpt is the start of a body as quoted text, for debug logs and for
// scepctl's terminal, never for a status or an Event: HTML scripts, styles
// and tags removed, cleaned and capped at MaxExcerptBytes. Binary bodies
// and bodies in no text encoding give "".
func Excerpt(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	if len(body) > 8192 {
		body = body[:8192]
	}
	if bytes.IndexByte(body, 0) >= 0 || !mostlyText(body) {
		return ""
	}
	text := scriptOrStyle.ReplaceAllString(string(body), " ")
	text = anyTag.ReplaceAllString(text, " ")
	text = Clean(text, MaxExcerptBytes)
	if text == "" {
		return ""
	}
	return strconv.Quote(text)
}

// mostlyText reports whether body reads as UTF-8 text: at most a few
// invalid sequences (a body cut at the cap may end inside a character).
func mostlyText(body []byte) bool {
	bad := 0
	for len(body) > 0 {
		r, size := utf8.DecodeRune(body)
		body = body[size:]
		if r == utf8.RuneError && size <= 1 {
			bad++
		}
	}
	return bad <= 3
}

// Describe says what kind of answer body is, in our words only: "an empty
// body", "an HTML page of 1234 bytes", "a text answer of 56 bytes", "a JSON
// document of 78 bytes" or "90 bytes of binary data". contentType is only
// used to tell the kinds apart, never repeated.
func Describe(body []byte, contentType string) string {
	n := len(body)
	if n == 0 {
		return "an empty body"
	}
	media, _, _ := mime.ParseMediaType(contentType)
	head := bytes.ToLower(bytes.TrimSpace(body[:min(n, 512)]))
	switch {
	case media == "text/html", media == "application/xhtml+xml",
		bytes.HasPrefix(head, []byte("<!doctype html")), bytes.HasPrefix(head, []byte("<html")),
		bytes.Contains(head, []byte("<html")), bytes.Contains(head, []byte("<body")):
		return fmt.Sprintf("an HTML page of %d bytes", n)
	case media == "application/json", bytes.HasPrefix(head, []byte("{")) && utf8.Valid(body[:min(n, 512)]):
		return fmt.Sprintf("a JSON document of %d bytes", n)
	case strings.HasPrefix(media, "text/"), bytes.IndexByte(body[:min(n, 512)], 0) < 0 && utf8.Valid(body[:min(n, 512)]) && printable(body[:min(n, 512)]):
		return fmt.Sprintf("a text answer of %d bytes", n)
	}
	return fmt.Sprintf("%d bytes of binary data", n)
}

func printable(b []byte) bool {
	for _, r := range string(b) {
		if !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// mediaType is the shape of a media type worth repeating.
var mediaType = regexp.MustCompile(`^[a-z0-9][a-z0-9.+_-]{0,30}/[a-z0-9][a-z0-9.+_-]{0,60}$`)

// ContentType returns a server's Content-Type as one we may repeat: the
// media type alone, lower-cased, parameters dropped, when it has the shape
// of one (type/subtype, at most 93 bytes of letters, digits and .+_-); ""
// when it has not, or when the header was empty.
func ContentType(contentType string) string {
	media, _, _ := strings.Cut(contentType, ";")
	media = strings.ToLower(strings.TrimSpace(media))
	if !mediaType.MatchString(media) {
		return ""
	}
	return media
}

// DescribeContentType says what Content-Type came, for a message:
// `Content-Type "text/html"`, "an unusual Content-Type" or "no
// Content-Type".
func DescribeContentType(contentType string) string {
	switch media := ContentType(contentType); {
	case media != "":
		return "Content-Type " + strconv.Quote(media)
	case strings.TrimSpace(contentType) != "":
		return "an unusual Content-Type"
	}
	return "no Content-Type"
}

// goQuoted matches a string literal as Go's %q writes it, which is how the
// standard library quotes what a peer sent in its errors ("malformed HTTP
// response \"...\"", "malformed MIME header line: \"...\"", an untrusted
// certificate's name).
var goQuoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// maxErrorBytes bounds the text of a scrubbed transport error.
const maxErrorBytes = 512

// ScrubError wraps a transport error (from net/http, net, crypto/tls) so
// that its text names what went wrong without repeating what the peer
// sent: every quoted string in it becomes "…", and the rest is cleaned
// and capped. errors.Is and errors.As still see the original error. A
// reply that is not HTTP at all (an SSH or SMTP banner) is named as such.
func ScrubError(err error) error {
	if err == nil {
		return nil
	}
	var s *scrubbed
	if errors.As(err, &s) {
		return err
	}
	return &scrubbed{err: err}
}

type scrubbed struct{ err error }

func (s *scrubbed) Error() string {
	text := goQuoted.ReplaceAllString(s.err.Error(), `"…"`)
	if strings.Contains(text, "malformed HTTP") {
		text += " (the server did not answer in HTTP)"
	}
	return Clean(text, maxErrorBytes)
}

func (s *scrubbed) Unwrap() error { return s.err }
