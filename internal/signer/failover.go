package signer

import (
	"errors"
	"fmt"
	"net"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// A profile may list several servers of one CA (url, then failoverURLs). A
// transaction is tied to the server that received its PKCSReq: NDES (and
// Intune, which documents it) fails a transaction that moves to another
// server, and a PKCSReq received twice may be issued twice. So:
//   - a transaction not sent anywhere tries the servers in order, those
//     found down last (profiles.Registry.ServerOrder), moving on only when
//     the PKCSReq certainly did not reach the server's SCEP application:
//     the connection was refused, or the server answered HTTP 5xx;
//   - before a PKCSReq leaves for a server, the server is sealed into the
//     request's state (State.Server), so a restart resumes there;
//   - CertPolls and retries of a transaction go only to its server, and a
//     server the profile no longer lists fails the transaction rather than
//     move it.
// The server comes only from the profile and from the sealed state, which a
// tenant can neither write nor replay onto another request.

// servers returns the servers this call may talk to, in order.
func (e *enrollment) servers() ([]string, error) {
	spec := e.p.GetSpec()
	pinned := e.st.Server
	if pinned == "" && e.st.Pending {
		// Sealed before failover existed: only url was ever polled.
		pinned = spec.URL
	}
	if pinned == "" {
		return e.Registry.ServerOrder(e.p), nil
	}
	if !slices.Contains(profiles.Servers(spec), pinned) {
		e.server = pinned
		return nil, e.fail(metrics.ResultFailed, fmt.Errorf("transaction %s went to the SCEP server %s, which the profile no longer lists (url, failoverURLs); it cannot move to another server: the next request of the Certificate starts a new one", e.tx, pinned))
	}
	return []string{pinned}, nil
}

// pinBeforeSend seals the server into the request's state before a PKCSReq
// leaves for it, when the profile has more than one server (with one, the
// server is url and nothing needs recording: no PATCH more per enrollment).
func (e *enrollment) pinBeforeSend() error {
	if len(profiles.Servers(e.p.GetSpec())) < 2 || e.st.Server == e.server {
		return nil
	}
	e.st.Server = e.server
	return e.persist()
}

// movedOn records that this call leaves e.server for the next server.
func (e *enrollment) movedOn(err error) {
	metrics.Failovers.WithLabelValues(e.key.String(), e.server).Inc()
	e.log.Info("SCEP server unavailable; trying the profile's next server", "request", e.req.id(), "server", e.server, "error", err.Error())
	e.Recorder.Eventf(e.obj(), e.p, corev1.EventTypeWarning, EventFailover, "Sign", "the SCEP server %s is unavailable (%s); trying the profile's next server", e.server, shorten(err.Error(), 200))
}

// serverURL is the server this call talks to, url before one was chosen.
func (e *enrollment) serverURL() string {
	if e.server == "" {
		return e.p.GetSpec().URL
	}
	return e.server
}

// mayFailOver says whether a server that failed GetCACaps or GetCACert
// (nothing of the transaction was sent yet) may be left for the next: it
// did not answer, answered 5xx, or answered something that is not SCEP (a
// proxy's page). A pin mismatch, a refused destination or a 4xx is the
// profile's to fix and is reported, not hidden behind another server.
func mayFailOver(err error) bool {
	if !scepclient.IsTransient(err) {
		return false
	}
	var httpErr *scepclient.HTTPError
	if errors.As(err, &httpErr) {
		return httpErr.StatusCode >= 500
	}
	return true
}

// neverReceived says whether a PKCSReq certainly did not reach the
// server's SCEP application: the connection was refused (it never left),
// or the server answered HTTP 5xx without a pkiMessage. A timeout or a
// lost connection leaves open whether it was received: the transaction
// stays with that server.
func neverReceived(err error) bool {
	var httpErr *scepclient.HTTPError
	if errors.As(err, &httpErr) {
		return httpErr.StatusCode >= 500
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}
