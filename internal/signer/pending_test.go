package signer

import (
	"errors"
	"testing"

	"github.com/cert-manager/issuer-lib/controllers/signer"
)

// TestStillPending: scep_pending_requests counts a request the server
// answered PENDING until it is issued or fails for good, also when
// recording PENDING on it conflicted with another write (the test of the
// monitoring rules once found no series: the request had been PENDING only
// in memory).
func TestStillPending(t *testing.T) {
	pending := State{Pending: true}
	for _, tc := range []struct {
		name string
		st   State
		err  error
		want bool
	}{
		{"waiting for the next CertPoll", pending, signer.PendingError{Err: errors.New("PENDING")}, true},
		{"recording PENDING conflicted", pending, errors.New("recording the SCEP transaction state: the object has been modified"), true},
		{"a CertPoll got no answer", pending, errors.New("SCEP PKIOperation: EOF"), true},
		{"issued", pending, nil, false},
		{"rejected or timed out", pending, signer.PermanentError{Err: errors.New("FAILURE")}, false},
		{"never answered PENDING", State{}, signer.PendingError{Err: errors.New("waiting")}, false},
	} {
		if got := stillPending(tc.st, tc.err); got != tc.want {
			t.Errorf("%s: stillPending = %v, want %v", tc.name, got, tc.want)
		}
	}
}
