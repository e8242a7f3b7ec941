package signer

import (
	"errors"
	"net"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// sendOutcome says what this process knows of a transaction's last
// pkiMessage.
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
	// answeredPending: the server answered PENDING: the transaction is
	// open there. It is polled with CertPoll even when recording that on
	// the request failed (a write conflict, the API server away): a second
	// PKCSReq would spend a one-time password NDES then refuses, and a
	// server that forgot the first would issue twice.
	answeredPending
	// answeredIssued: the server issued. Should the certificate not reach
	// the request (its status write failed), the next attempt asks with
	// CertPoll, which returns the same certificate, before any PKCSReq.
	answeredIssued
)

// sendRecord is what this process knows of one transaction.
type sendRecord struct {
	outcome sendOutcome
	// server is where the transaction lives (url or a failoverURLs entry).
	server string
	at     time.Time
}

// touchedFor is how long a request this process acted on is remembered (and
// read fresh rather than from the cache): far longer than an informer lags.
const touchedFor = time.Hour

func (s *Signer) sendOutcome(tx scep.TransactionID) sendOutcome {
	rec, ok := s.sendRecordOf(tx)
	if !ok {
		return notSentHere
	}
	return rec.outcome
}

// sendRecordOf is this process's record of tx, if any.
func (s *Signer) sendRecordOf(tx scep.TransactionID) (sendRecord, bool) {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	rec, ok := s.sent[tx]
	return rec, ok
}

func (s *Signer) recordSend(uid types.UID, tx scep.TransactionID, answered bool) {
	outcome := sentUnanswered
	if answered {
		outcome = sentAnswered
	}
	s.recordOutcome(uid, tx, "", outcome)
}

// recordOutcome keeps what the server answered for tx (server "" keeps the
// server recorded before).
func (s *Signer) recordOutcome(uid types.UID, tx scep.TransactionID, server string, outcome sendOutcome) {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	if s.sent == nil {
		s.sent = map[scep.TransactionID]sendRecord{}
	}
	now := s.now()
	if server == "" {
		server = s.sent[tx].server
	}
	s.sent[tx] = sendRecord{outcome: outcome, server: server, at: now}
	s.touchLocked(uid)
	// Prune now and then: issued transactions are kept for touchedFor.
	if len(s.sent)%1024 == 0 {
		for k, r := range s.sent {
			if now.Sub(r.at) > touchedFor {
				delete(s.sent, k)
			}
		}
	}
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
