package controllers_test

import (
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/test/ndes"
)

// requestEventSays waits for an Event of reason regarding cr whose note
// holds every one of words.
func requestEventSays(t *testing.T, cr *cmapi.CertificateRequest, reason string, words ...string) {
	t.Helper()
	eventually(t, 30*time.Second, reason+" Event on "+cr.Name, func() (bool, string) {
		var evs eventsv1.EventList
		if err := apiServer(t).Client.List(t.Context(), &evs, client.InNamespace(cr.Namespace), client.MatchingFields{"regarding.name": cr.Name}); err != nil {
			return false, err.Error()
		}
		var notes []string
		for _, e := range evs.Items {
			if e.Reason != reason {
				continue
			}
			notes = append(notes, e.Note)
			ok := true
			for _, w := range words {
				ok = ok && strings.Contains(e.Note, w)
			}
			if ok {
				return true, ""
			}
		}
		return false, strings.Join(notes, " | ")
	})
}

// TestNDESVersionsOperator: the operator against each NDES release: the
// profile becomes Ready (on 2008, whose GetCACaps closes the connection or
// answers nothing, with the minimal capabilities), a request is issued with
// a one-time password from the admin page, and a CA that refuses shows
// NDES's error code in words in the request's condition and Event.
func TestNDESVersionsOperator(t *testing.T) {
	parallel(t)
	for _, tc := range []struct {
		name string
		opts ndes.Options
		post bool
	}{
		{"2016+", ndes.Options{}, true},
		// The IIS query limit raised, as a GET-only NDES needs.
		{"2012 R2", ndes.Options{Version: ndes.Version2012R2, MaxQueryBytes: 65534}, true},
		{"2008 closed GetCACaps", ndes.Options{Version: ndes.Version2008, MaxQueryBytes: 65534}, false},
		{"2008 empty GetCACaps", ndes.Options{Version: ndes.Version2008, CapsFailure: ndes.CapsEmpty, MaxQueryBytes: 65534}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parallel(t)
			ns := namespace(t)
			startManager(t)
			srv := startNDES(t, tc.opts)
			ndesCredentials(t, ns, "ndes-agent", ndesUser, ndes.DefaultPassword)
			p := ndesProfile(t, ns, "ndes", ndesDynamicSpec(srv, "NTLM", "ndes-agent"), nil)
			waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
			if caps := strings.Join(p.Status.Capabilities, ","); strings.Contains(caps, "POSTPKIOperation") != tc.post || strings.Contains(caps, "AES") {
				t.Errorf("capabilities %s", caps)
			}
			issued(t, waitRequest(t, ndesRequest(t, ns, p, "dev", 0, "dev"), 30*time.Second), srv.CA)

			srv.Set(func(o *ndes.Options) { o.FailWith = ndes.ErrTemplateDenied })
			denied := waitRequest(t, ndesRequest(t, ns, p, "denied", 1, "denied"), 30*time.Second)
			if ready, desc := readyOf(denied); ready.Reason != cmapi.CertificateRequestReasonFailed || !strings.Contains(ready.Message, "0x80094012") || !strings.Contains(ready.Message, "certificate template") {
				t.Errorf("template denied: %s", desc)
			}
			requestEventSays(t, denied, "SCEPRejected", "0x80094012", "Read and Enroll")

			srv.Set(func(o *ndes.Options) { o.FailWith = ndes.ErrCAUnavailable })
			down := waitRequest(t, ndesRequest(t, ns, p, "down", 2, "down"), 30*time.Second)
			if ready, desc := readyOf(down); !strings.Contains(ready.Message, "0x800706BA") || !strings.Contains(ready.Message, "cannot reach the CA") {
				t.Errorf("CA unavailable: %s", desc)
			}
		})
	}
}
