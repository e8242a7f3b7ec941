package ndes

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrCacheFull is NDES's own "The password cache is full." page, served with
// HTTP 200: every password it may hold unused has been handed out and none
// has been used or has expired yet. Asking again at once does not help.
var ErrCacheFull = errors.New(`NDES's password cache is full: it keeps at most PasswordMax unused passwords ` +
	`(5 by default), each valid for 60 minutes; wait for one to be used or to expire, or raise PasswordMax ` +
	`(REG_DWORD under HKLM\SOFTWARE\Microsoft\Cryptography\MSCEP) on the NDES server and restart IIS`)

// IsCacheFull reports whether err is, or wraps, ErrCacheFull.
func IsCacheFull(err error) bool { return errors.Is(err, ErrCacheFull) }

// AuthError is a refusal of the account: HTTP 401 or 403 from IIS, or NDES's
// page "You do not have sufficient permission to enroll with SCEP." served
// with HTTP 200. It names the user, never the password.
type AuthError struct {
	// StatusCode is the HTTP status; 0 when ExtractPassword found the
	// refusal in a page whose status it did not see.
	StatusCode int
	// User is the account that was refused, as configured.
	User string
	// Detail is what the server said: NDES's sentence, or an excerpt of
	// IIS's error page and the authentication schemes it offers.
	Detail string
}

// Error names the user and the server's reason, and says what to check.
func (e *AuthError) Error() string {
	who := "the account"
	if e.User != "" {
		who = "user " + e.User
	}
	msg := "NDES refused " + who
	if e.StatusCode != 0 && e.StatusCode != http.StatusOK {
		msg += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.StatusCode == http.StatusUnauthorized {
		return msg + "; check the user name (DOMAIN\\user or user@domain), its password and the authentication scheme (NTLM or Basic) IIS expects"
	}
	return msg + "; the account may log on but not request enrollment passwords: check that it has Enroll permission on the certificate templates NDES uses"
}

// IsAuthError reports whether err is, or wraps, an *AuthError.
func IsAuthError(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae)
}

// PageError is an answer that holds no challenge password and is not one of
// NDES's known refusals: a wrong URL, an IIS or proxy error page, a login
// portal, or an NDES page in a format this package does not know.
type PageError struct {
	// StatusCode is the HTTP status; 0 when ExtractPassword did not see it.
	StatusCode int
	// Reason, when set, says what was wrong with a page that looked like
	// the admin page.
	Reason string
	// Excerpt is the start of the page as text, HTML stripped. It is left
	// empty when the page may hold a password.
	Excerpt string
}

// Error says what the page was instead, with its excerpt when safe.
func (e *PageError) Error() string {
	var msg string
	switch {
	case e.StatusCode != 0 && (e.StatusCode < 200 || e.StatusCode > 299):
		msg = fmt.Sprintf("the NDES admin page answered HTTP %d", e.StatusCode)
	case e.Reason != "":
		msg = "the NDES admin page holds no challenge password we can read"
	default:
		msg = "the answer holds no enrollment challenge password (is the URL NDES's /certsrv/mscep_admin/ page?)"
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Excerpt != "" {
		msg += "; it says: " + e.Excerpt
	}
	return msg
}

// Temporary reports whether asking again later may help: HTTP 5xx, 429 and
// 408. A page that is simply not the admin page will not change.
func (e *PageError) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout
}
