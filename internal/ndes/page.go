package ndes

import (
	"bytes"
	"html"
	"mime"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	xunicode "golang.org/x/text/encoding/unicode"

	"github.com/scep-operator/scep-operator/internal/servertext"
)

// Phrases NDES writes on its admin page (English installations). They are
// matched case-insensitively on the page's text with white space collapsed,
// since IIS and NDES versions differ in line breaks and capitalisation.
const (
	phraseCacheFull    = "the password cache is full"
	phraseNoPermission = "you do not have sufficient permission to enroll with scep"
)

// passwordMarker is the sentence that introduces the challenge password. It
// is searched in the HTML, not the text, because the password is told apart
// from the CA thumbprint (also bold, earlier on the page) only by its place
// after this sentence.
var passwordMarker = regexp.MustCompile(`(?i)the\s+enrollment\s+challenge\s+password\s+is\s*:`)

// maxPasswordLen bounds what is accepted as a password. NDES makes 16 hex
// digits by default (PasswordLength is configurable); anything much longer
// in that <B> means the page is not what we think it is.
const maxPasswordLen = 128

// Decode returns an NDES admin page as text. NDES serves it in UTF-16,
// usually little-endian, often with neither a BOM nor a charset in
// Content-Type, while proxies and error pages in front of it speak UTF-8 or
// Latin-1. The order of evidence is: a BOM; else the pattern of zero bytes
// (ASCII markup in UTF-16 has one in every other byte, which UTF-8 never
// has); else the Content-Type charset; else UTF-8. Bytes that are not valid
// in the chosen encoding become U+FFFD rather than an error: the password
// is ASCII, and the rest of the page only feeds error excerpts.
func Decode(body []byte, contentType string) (string, error) {
	switch {
	case bytes.HasPrefix(body, []byte{0xFF, 0xFE}):
		return decodeWith(utf16LE, body[2:])
	case bytes.HasPrefix(body, []byte{0xFE, 0xFF}):
		return decodeWith(utf16BE, body[2:])
	case bytes.HasPrefix(body, []byte{0xEF, 0xBB, 0xBF}):
		return strings.ToValidUTF8(string(body[3:]), "\uFFFD"), nil
	}
	if enc := sniffUTF16(body); enc != nil {
		return decodeWith(enc, body)
	}
	switch charsetOf(contentType) {
	case "utf-16", "utf-16le", "ucs-2", "ucs-2le", "unicode":
		// A header claiming UTF-16 over a body without the zero-byte pattern
		// is wrong about it (ASCII markup in UTF-16 always has the pattern);
		// valid UTF-8 is the likelier truth.
		if !utf8.Valid(body) {
			return decodeWith(utf16LE, body)
		}
	case "utf-16be", "ucs-2be", "unicodefffe":
		if !utf8.Valid(body) {
			return decodeWith(utf16BE, body)
		}
	case "iso-8859-1", "latin1", "l1", "windows-1252", "cp1252", "x-cp1252":
		// As browsers do, Latin-1 is read as its superset windows-1252.
		return decodeWith(charmap.Windows1252, body)
	}
	return strings.ToValidUTF8(string(body), "\uFFFD"), nil
}

var (
	utf16LE encoding.Encoding = xunicode.UTF16(xunicode.LittleEndian, xunicode.IgnoreBOM)
	utf16BE encoding.Encoding = xunicode.UTF16(xunicode.BigEndian, xunicode.IgnoreBOM)
)

func decodeWith(enc encoding.Encoding, body []byte) (string, error) {
	out, err := enc.NewDecoder().Bytes(body)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// sniffUTF16 recognises BOM-less UTF-16 by where its zero bytes fall in the
// first kilobyte: mostly at odd offsets is little-endian ("<\x00H\x00"),
// mostly at even offsets big-endian. A quarter of the code units having a
// zero high byte is far below what an HTML page shows and far above what
// any 8-bit text has (none).
func sniffUTF16(body []byte) encoding.Encoding {
	n := min(len(body), 1024) &^ 1
	if n < 2 {
		return nil
	}
	var even, odd int
	for i := 0; i < n; i += 2 {
		if body[i] == 0 {
			even++
		}
		if body[i+1] == 0 {
			odd++
		}
	}
	units := n / 2
	switch {
	case odd*4 >= units && even*8 <= odd:
		return utf16LE
	case even*4 >= units && odd*8 <= even:
		return utf16BE
	}
	return nil
}

func charsetOf(contentType string) string {
	if contentType == "" {
		return ""
	}
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(params["charset"]))
}

// ExtractPassword finds the enrollment challenge password in the text of an
// NDES admin page: the content of the first <B>...</B> after "The
// enrollment challenge password is:", with only tags and white space in
// between. The CA thumbprint, which NDES also puts in <B> tags earlier on
// the page, is never taken. A page that reports a full password cache gives
// ErrCacheFull; one that refuses the account gives an *AuthError (with
// StatusCode 0: the page itself said so); any other page gives a
// *PageError.
func ExtractPassword(text string) (string, error) {
	if loc := passwordMarker.FindStringIndex(text); loc != nil {
		pw, ok := boldAfter(text[loc[1]:])
		if ok && validPassword(pw) {
			return pw, nil
		}
		// No excerpt: what follows the marker may be the password in a
		// form we do not recognise, and excerpts end up in logs and
		// Kubernetes events.
		return "", &PageError{Reason: "the page introduces a challenge password, but not in the <B>...</B> form NDES uses; its format is not recognised"}
	}
	plain := strings.ToLower(plainText(text))
	switch {
	case strings.Contains(plain, phraseCacheFull):
		return "", ErrCacheFull
	case strings.Contains(plain, phraseNoPermission):
		return "", &AuthError{Detail: "You do not have sufficient permission to enroll with SCEP."}
	}
	// NDES pages in other languages say the sentence differently but
	// still put the password in bold: bold text stays out of the excerpt.
	return "", &PageError{Excerpt: excerpt(boldElement.ReplaceAllString(text, " … "))}
}

// boldAfter returns the trimmed text inside the first <B> element of s,
// provided nothing but white space, &nbsp; and other tags (such as <P> or
// <Font>) comes before it.
func boldAfter(s string) (string, bool) {
	for {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		switch {
		case s == "":
			return "", false
		case hasPrefixFold(s, "&nbsp;"):
			s = s[len("&nbsp;"):]
			continue
		case s[0] != '<':
			return "", false
		}
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return "", false
		}
		tag := s[1:end]
		s = s[end+1:]
		if name, _, _ := strings.Cut(strings.TrimSpace(tag), " "); strings.EqualFold(name, "b") {
			break
		}
	}
	closing := strings.Index(strings.ToLower(s), "</b")
	if closing < 0 {
		return "", false
	}
	return strings.TrimSpace(html.UnescapeString(stripTags(s[:closing]))), true
}

// validPassword accepts what can be a challenge password: printable, no
// white space, and no '<' or '>', which only markup the tag stripper could
// not make sense of (an unclosed "<" inside the <B>) leaves there; NDES
// makes hex digits.
func validPassword(pw string) bool {
	if pw == "" || len(pw) > maxPasswordLen || strings.ContainsAny(pw, "<>") {
		return false
	}
	for _, r := range pw {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

var (
	boldElement   = regexp.MustCompile(`(?is)<b\b[^>]*>.*?</b\s*>`)
	scriptElement = regexp.MustCompile(`(?is)<script\b.*?</script\s*>`)
	styleElement  = regexp.MustCompile(`(?is)<style\b.*?</style\s*>`)
	anyTag        = regexp.MustCompile(`(?s)<[^>]*>`)
)

func stripTags(s string) string { return anyTag.ReplaceAllString(s, " ") }

// plainText turns HTML into one line of text: scripts, styles and tags
// removed, entities decoded, runs of white space (including &nbsp;) made one
// space.
func plainText(s string) string {
	s = scriptElement.ReplaceAllString(s, " ")
	s = styleElement.ReplaceAllString(s, " ")
	s = html.UnescapeString(stripTags(s))
	return strings.Join(strings.Fields(s), " ")
}

// excerpt is the start of a page as quoted, cleaned text, for debug logs
// and an admin's terminal: at most servertext.MaxExcerptBytes.
func excerpt(page string) string {
	text := servertext.Clean(plainText(page), servertext.MaxExcerptBytes)
	if text == "" {
		return ""
	}
	return strconv.Quote(text)
}
