package ndes

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf16"

	// Registered for Options.ThumbprintHash.
	_ "crypto/md5"
	_ "crypto/sha1"
	_ "crypto/sha256"
)

// serveAdmin is /certsrv/mscep_admin/: authenticate, check the account is
// allowed, then hand out a one-time password (or say why not), as NDES does.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counters.AdminRequests++
	o := s.opts
	s.mu.Unlock()

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 - HTTP verb used to access this page is not allowed.", http.StatusMethodNotAllowed)
		return
	}
	user, ok := s.authenticateAdmin(w, r, o)
	if !ok {
		return
	}
	if !allowed(user, o) {
		s.count(func(c *Counters) { c.PermissionPages++ })
		s.writePage(w, o, "<P> "+NoPermissionText+"\r\n")
		return
	}
	pw, full := s.issue(o)
	if full {
		s.count(func(c *Counters) { c.CacheFullPages++ })
		s.writePage(w, o, "<P> "+CacheFullText+" Wait until the issued passwords are used or expire, then refresh this page.\r\n")
		return
	}
	s.count(func(c *Counters) { c.PasswordPages++ })
	minutes := int(o.PasswordValidity.Minutes())
	body := "<P> To complete certificate enrollment for your network device you will need the following information:\r\n" +
		"<P> The thumbprint (hash value) for the CA certificate is: <B> " + s.Thumbprint + " </B>\r\n" +
		"<P> The enrollment challenge password is: <B> " + pw + " </B>\r\n"
	// The same words under SinglePassword: the page is NDES's, not the
	// registry's.
	body += fmt.Sprintf("<P> This password can be used only once and will expire within %d minutes.\r\n", minutes) +
		"<P> Each enrollment requires a new challenge password. You can refresh this web page to obtain a new challenge password.\r\n"
	s.writePage(w, o, body)
}

func (s *Server) count(f func(c *Counters)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.counters)
}

// allowed reports whether user (`DOMAIN\name`) may get passwords.
func allowed(user string, o Options) bool {
	if len(o.AllowedUsers) == 0 || o.Auth == AuthNone {
		return true
	}
	_, name, _ := strings.Cut(user, `\`)
	for _, a := range o.AllowedUsers {
		n, dom := splitUser(a)
		if strings.EqualFold(n, name) && (dom == "" || knownDomain(dom, o)) {
			return true
		}
	}
	return false
}

// splitUser splits `DOMAIN\user` and user@domain; a bare name has no domain.
func splitUser(s string) (name, domain string) {
	if d, n, ok := strings.Cut(s, `\`); ok {
		return n, d
	}
	if n, d, ok := strings.Cut(s, "@"); ok {
		return n, d
	}
	return s, ""
}

func knownDomain(d string, o Options) bool {
	return strings.EqualFold(d, o.Domain) || strings.EqualFold(d, o.DNSDomain)
}

// IssuePassword returns a fresh one-time password as a browser fetch of the
// admin page would (counted in PasswordsIssued, not in the page counters),
// or "" when the password cache is full. Under SinglePassword it returns
// that password.
func (s *Server) IssuePassword() string {
	s.mu.Lock()
	o := s.opts
	s.mu.Unlock()
	pw, _ := s.issue(o)
	return pw
}

// IssuedPasswords returns every one-time password issued so far, used or
// not, so a test can check none of them was shown anywhere.
func (s *Server) IssuedPasswords() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.everIssued)
}

// UnusedPasswords returns how many issued passwords are neither used nor
// expired, what fills the cache.
func (s *Server) UnusedPasswords() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.opts)
	return len(s.passwords)
}

// issue creates a one-time password, or reports the cache full.
func (s *Server) issue(o Options) (pw string, full bool) {
	if o.SinglePassword != "" {
		return o.SinglePassword, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(o)
	if o.CacheSize > 0 && len(s.passwords) >= o.CacheSize {
		return "", true
	}
	// NDES: 8 random bytes as 16 upper-case hex digits.
	b := make([]byte, 8)
	rand.Read(b)
	pw = strings.ToUpper(hex.EncodeToString(b))
	s.passwords[pw] = o.Now()
	s.everIssued = append(s.everIssued, pw)
	s.counters.PasswordsIssued++
	return pw, false
}

// expireLocked forgets passwords past their validity; s.mu must be held.
func (s *Server) expireLocked(o Options) {
	now := o.Now()
	for pw, issued := range s.passwords {
		if !now.Before(issued.Add(o.PasswordValidity)) {
			delete(s.passwords, pw)
		}
	}
}

// verifyChallenge is the SCEP server's challenge hook: it accepts an
// issued, unexpired password once (or the single password), and refuses
// anything else with NDES's event log text. An accepted request is
// recorded with the template the registry picks for its key usage. It runs under the SCEP
// server's lock and takes only s.mu.
func (s *Server) verifyChallenge(pw string, csr *x509.CertificateRequest) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.opts
	switch {
	case o.NoEnforcePassword:
		s.recordEnrollmentLocked(o, csr)
		return true, ""
	case o.SinglePassword != "":
		if pw == o.SinglePassword {
			s.counters.PasswordsConsumed++
			s.recordEnrollmentLocked(o, csr)
			return true, ""
		}
	default:
		s.expireLocked(o)
		if _, ok := s.passwords[pw]; ok && pw != "" {
			delete(s.passwords, pw)
			s.counters.PasswordsConsumed++
			s.recordEnrollmentLocked(o, csr)
			return true, ""
		}
	}
	s.counters.PasswordsRefused++
	return false, PasswordRefusedText
}

// writePage sends an admin page with body in NDES's frame, encoded as
// configured, with status 200 (NDES's error pages are 200 too).
func (s *Server) writePage(w http.ResponseWriter, o Options, body string) {
	html := "<HTML><Head><Title>Network Device Enrollment Service</Title></Head>\r\n" +
		"<Body BgColor=#FFFFFF><Font ID=locPageFont Face=\"Arial\">\r\n" +
		"<Table Border=0 CellSpacing=0 CellPadding=4 Width=100% BgColor=#008080>\r\n" +
		"<TR><TD><Font Color=#FFFFFF><Font Face=\"Arial\" Size=-1><B><I>Microsoft</I></B></Font><Font Face=\"Arial\" Size=-1> Active Directory Certificate Services -- " + s.CA.Subject.CommonName + "</Font></Font></TD></TR>\r\n" +
		"</Table>\r\n" +
		"<P ID=locPageTitle> <B> Network Device Enrollment Service</B>\r\n" +
		"<P> Network Device Enrollment Service allows you to obtain certificates for routers or other network devices using the Simple Certificate Enrollment Protocol (SCEP).\r\n" +
		body +
		"<P> For more information see <A HREF=http://go.microsoft.com/fwlink/?LinkId=67852>Using Network Device Enrollment Service </A>.\r\n" +
		"</Font></Body></HTML>\r\n"
	ct := o.ContentType
	if ct == "" {
		ct = "text/html"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "private")
	w.WriteHeader(http.StatusOK)
	w.Write(Encode(html, o.PageEncoding))
}

// Encode returns text in encoding e, with the byte order mark if e has one.
// Tests use it to build pages of their own.
func Encode(text string, e Encoding) []byte {
	if e == UTF8 {
		return []byte(text)
	}
	units := utf16.Encode([]rune(text))
	var out []byte
	var order binary.AppendByteOrder = binary.LittleEndian
	if e == UTF16BE || e == UTF16BEBOM {
		order = binary.BigEndian
	}
	if e == UTF16LEBOM || e == UTF16BEBOM {
		out = order.AppendUint16(out, 0xFEFF)
	}
	for _, u := range units {
		out = order.AppendUint16(out, u)
	}
	return out
}
