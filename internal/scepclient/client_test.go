package scepclient

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/scep"
)

func TestParseRetryAfter(t *testing.T) {
	if d := parseRetryAfter("120"); d != 2*time.Minute {
		t.Errorf("seconds: %s", d)
	}
	if d := parseRetryAfter(time.Now().Add(time.Hour).UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")); d < 59*time.Minute || d > time.Hour {
		t.Errorf("date: %s", d)
	}
	if d := parseRetryAfter("soon"); d != 0 {
		t.Errorf("garbage: %s", d)
	}
}

func TestIsTransient(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&scep.FailureError{FailInfo: scep.BadRequest}, false},
		{&scep.FingerprintMismatchError{}, false},
		{&QueryTooLongError{Length: 3000, Limit: 2048}, false},
		{context.Canceled, false},
		{&HTTPError{StatusCode: 503}, true},
		{&HTTPError{StatusCode: 429}, true},
		{&HTTPError{StatusCode: 404}, false},
		{&ContentError{Err: errors.New("html")}, true},
		{&TooLargeError{Operation: OpGetCACert, Limit: 1 << 20}, false},
		{&net.OpError{Op: "dial", Err: &egress.RefusedError{}}, false},
		{&egress.RedirectError{What: "the SCEP server"}, false},
		{&scep.ReplyError{Reason: "RecipientNonceMismatch", Err: errors.New("x")}, true},
		{context.DeadlineExceeded, true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{errors.New("something else"), false},
	} {
		if got := IsTransient(tt.err); got != tt.want {
			t.Errorf("IsTransient(%T %v) = %v, want %v", tt.err, tt.err, got, tt.want)
		}
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"ftp://x/scep", "http://", "::"} {
		if _, err := New(Config{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}
