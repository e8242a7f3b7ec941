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

// AuthError is a refusal of the account: HTTP 401 or 403 from IIS, NDES's
// page "You do not have sufficient permission to enroll with SCEP." served
// with HTTP 200, or the Kerberos KDC refusing the account's password or
// keytab (wrong, expired, disabled). It names the user, never the password, and says what the
// refusal was in our words: the page's own text stays in Excerpt.
type AuthError struct {
	// StatusCode is the HTTP status; 0 when ExtractPassword found the
	// refusal in a page whose status it did not see.
	StatusCode int
	// User is the account that was refused, as configured.
	User string
	// Detail is our reading of the refusal: NDES's sentence when the page
	// was NDES's known refusal, or the authentication schemes IIS offers
	// when it does not offer ours.
	Detail string
	// Excerpt is the start of the page as quoted, cleaned text, for debug
	// logs and an admin's terminal only; never in a status or an Event.
	Excerpt string
	// Remedy, when set, replaces the generic advice on what to check.
	Remedy string
	// Kerberos is set when the KDC, not IIS, refused the account: nothing
	// was sent to the admin page with these credentials.
	Kerberos bool
}

// Error names the user and the server's reason, and says what to check.
func (e *AuthError) Error() string {
	who := "the account"
	if e.User != "" {
		who = "user " + e.User
	}
	if e.Kerberos {
		msg := "the Kerberos KDC refused " + who
		if e.Detail != "" {
			msg += ": " + e.Detail
		}
		if e.Remedy != "" {
			msg += "; " + e.Remedy
		}
		return msg
	}
	msg := "NDES refused " + who
	if e.StatusCode != 0 && e.StatusCode != http.StatusOK {
		msg += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Remedy != "" {
		return msg + "; " + e.Remedy
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
// portal, or an NDES page in a format this package does not know. Its
// message says what kind of answer it was, never what it said.
type PageError struct {
	// StatusCode is the HTTP status; 0 when ExtractPassword did not see it.
	StatusCode int
	// Reason, when set, says what was wrong with a page that looked like
	// the admin page.
	Reason string
	// Body says what kind of body came, e.g. "an HTML page of 1234 bytes"
	// (servertext.Describe); empty when ExtractPassword did not see it.
	Body string
	// Excerpt is the start of the page as quoted, cleaned text, HTML
	// stripped, for debug logs and an admin's terminal only; never in a
	// status or an Event. It is left empty when the page may hold a
	// password.
	Excerpt string
}

// Error says what the page was instead.
func (e *PageError) Error() string {
	var msg string
	switch {
	case e.StatusCode != 0 && (e.StatusCode < 200 || e.StatusCode > 299):
		msg = fmt.Sprintf("the NDES admin page answered HTTP %d", e.StatusCode)
		if text := http.StatusText(e.StatusCode); text != "" {
			msg += " (" + text + ")"
		}
		if e.Body != "" {
			msg += " with " + e.Body
		}
	case e.Reason != "":
		msg = "the NDES admin page holds no challenge password we can read"
	default:
		msg = "the answer"
		if e.Body != "" {
			msg = e.Body
		}
		msg += " holds no enrollment challenge password (is the URL NDES's /certsrv/mscep_admin/ page?)"
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Temporary reports whether asking again later may help: HTTP 5xx, 429 and
// 408. A page that is simply not the admin page will not change.
func (e *PageError) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout
}
