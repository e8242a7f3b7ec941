package signer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// TestServerDoesNotKnow: only the server's own word that it holds no such
// transaction lets a PKCSReq follow a CertPoll; every error that may hide a
// server holding it (no answer, a gateway, an answer not SCEP) does not.
func TestServerDoesNotKnow(t *testing.T) {
	status := func(code int) error {
		return fmt.Errorf("polling: %w", &scepclient.HTTPError{Operation: "PKIOperation", StatusCode: code})
	}
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"FAILURE badCertID":          {&scep.FailureError{FailInfo: scep.BadCertID}, true},
		"HTTP 500 (cannot poll)":     {status(http.StatusInternalServerError), true},
		"HTTP 501":                   {status(http.StatusNotImplemented), true},
		"HTTP 400":                   {status(http.StatusBadRequest), true},
		"HTTP 404":                   {status(http.StatusNotFound), true},
		"HTTP 502 (a gateway)":       {status(http.StatusBadGateway), false},
		"HTTP 503":                   {status(http.StatusServiceUnavailable), false},
		"HTTP 504":                   {status(http.StatusGatewayTimeout), false},
		"HTTP 429":                   {status(http.StatusTooManyRequests), false},
		"HTTP 408":                   {status(http.StatusRequestTimeout), false},
		"connection closed":          {fmt.Errorf("SCEP PKIOperation: %w", io.EOF), false},
		"connection refused":         {&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		"timeout":                    {fmt.Errorf("polling: %w", context.DeadlineExceeded), false},
		"reply signature unverified": {&scep.ReplyError{Reason: "BadSignature", Err: errors.New("x")}, false},
		"answer that is not SCEP":    {&scepclient.ContentError{Operation: "PKIOperation"}, false},
	} {
		if got := serverDoesNotKnow(tc.err); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}
