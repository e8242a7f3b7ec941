package signer

import (
	"errors"
	"net"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// sendOutcome says what this process knows of a transaction's last PKCSReq.
type sendOutcome int

const (
	// notSentHere: another process (before a restart, or the replica that
	// led before) sent it, perhaps; the reply may be lost.
	notSentHere sendOutcome = iota
	// sentUnanswered: sent, but no HTTP answer came (connection lost,
	// timeout): the server may have acted on it.
	sentUnanswered
	// sentAnswered: the server answered it (even if with an error).
	sentAnswered
)

// touchedFor is how long a request this process acted on is remembered (and
// read fresh rather than from the cache): far longer than an informer lags.
const touchedFor = time.Hour

func (s *Signer) sendOutcome(tx scep.TransactionID) sendOutcome {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	answered, ok := s.sent[tx]
	switch {
	case !ok:
		return notSentHere
	case answered:
		return sentAnswered
	}
	return sentUnanswered
}

func (s *Signer) recordSend(uid types.UID, tx scep.TransactionID, answered bool) {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	if s.sent == nil {
		s.sent = map[scep.TransactionID]bool{}
	}
	s.sent[tx] = answered
	s.touchLocked(uid)
}

// forgetSend drops a finished transaction; the request stays touched, so a
// cache that does not show it finished yet is not believed.
func (s *Signer) forgetSend(uid types.UID, tx scep.TransactionID) {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	delete(s.sent, tx)
	s.touchLocked(uid)
}

// touch marks a request this process wrote state on.
func (s *Signer) touch(uid types.UID) {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	s.touchLocked(uid)
}

func (s *Signer) touchLocked(uid types.UID) {
	if uid == "" {
		return
	}
	if s.touched == nil {
		s.touched = map[types.UID]time.Time{}
	}
	now := s.now()
	s.touched[uid] = now
	// Prune now and then: the map holds at most an hour of requests.
	if len(s.touched)%1024 == 0 {
		for k, t := range s.touched {
			if now.Sub(t) > touchedFor {
				delete(s.touched, k)
			}
		}
	}
}

func (s *Signer) touchedRequest(uid types.UID) bool {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	t, ok := s.touched[uid]
	return ok && s.now().Sub(t) <= touchedFor
}

// answered reports whether the outcome of sending a pkiMessage is known:
// the server answered (an HTTP status, a reply good or bad, a FAILURE) or
// the request never left (refused at dial). Anything else (a connection
// lost, a timeout) leaves open whether the server acted on it.
func answered(err error) bool {
	var (
		httpErr    *scepclient.HTTPError
		contentErr *scepclient.ContentError
		tooLong    *scepclient.QueryTooLongError
		reply      *scep.ReplyError
		failure    *scep.FailureError
		opErr      *net.OpError
	)
	switch {
	case err == nil, errors.As(err, &httpErr), errors.As(err, &contentErr), errors.As(err, &tooLong),
		errors.As(err, &reply), errors.As(err, &failure):
		return true
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return true
	}
	return false
}
