package scepclient

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// IsTransient reports whether trying the same exchange again later may
// succeed: network errors and timeouts, HTTP 5xx/429/408, answers that are
// not SCEP (an HTML page from a proxy) and replies that break the protocol
// (a wrong nonce may be a misrouted reply). A server's FAILURE, a CA
// fingerprint mismatch, a query too long for GET, an answer over its size
// cap, a destination the egress policy refuses, a redirect elsewhere and
// a cancelled context are not transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var (
		failure  *scep.FailureError
		mismatch *scep.FingerprintMismatchError
		tooLong  *QueryTooLongError
		tooLarge *TooLargeError
		refused  *egress.RefusedError
		redirect *egress.RedirectError
		httpErr  *HTTPError
		content  *ContentError
		reply    *scep.ReplyError
		netErr   net.Error
	)
	switch {
	case errors.As(err, &failure), errors.As(err, &mismatch), errors.As(err, &tooLong), errors.As(err, &tooLarge),
		// Checked before net.Error: a refusal travels in a *net.OpError.
		errors.As(err, &refused), errors.As(err, &redirect):
		return false
	case errors.As(err, &httpErr):
		return httpErr.Temporary()
	case errors.As(err, &content), errors.As(err, &reply):
		return true
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr),
		// A connection closed before or during the answer.
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}
