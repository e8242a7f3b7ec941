package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// Events about one server of a profile with failoverURLs.
const (
	// EventServerUnavailable: one of the profile's servers failed its
	// check while another still serves.
	EventServerUnavailable = "ServerUnavailable"
	// EventServerAvailable: a server that had failed its check passed it.
	EventServerAvailable = "ServerAvailable"
)

// maxServerMessage bounds a server's message in status.servers, below the
// schema's 2048 characters with room for the ellipsis shorten adds.
const maxServerMessage = 2040

// checkServers asks each of p's servers (url, then failoverURLs) for its
// capabilities and certificates, records each one's health in
// status.servers, and returns the answer of the first server that passed,
// which the profile's status shows. The profile is usable while one server
// passes; when none does, the reason and error are url's.
func (r *ProfileReconciler) checkServers(ctx context.Context, p scepv1alpha1.Profile, previous *scepv1alpha1.SCEPProfileStatus) (*scepclient.ServerInfo, string, error) {
	var (
		first     *scepclient.ServerInfo
		urlReason string
		urlErr    error
		servers   []scepv1alpha1.ServerStatus
	)
	several := len(profiles.Servers(p.GetSpec())) > 1
	for _, server := range profiles.Servers(p.GetSpec()) {
		st := scepv1alpha1.ServerStatus{URL: server}
		info, err := r.Registry.DiscoverServer(ctx, p, server)
		if err == nil {
			st.Ready, st.Capabilities = true, info.Caps.Strings()
			if first == nil {
				first = info
			}
		} else {
			err = fmt.Errorf("checking %s: %w", server, err)
			st.Reason, st.Message = classify(err), shorten(err.Error(), maxServerMessage)
			if urlErr == nil {
				urlReason, urlErr = st.Reason, err
			}
		}
		if several {
			r.serverEvent(p, previous, st)
		}
		servers = append(servers, st)
	}
	p.GetStatus().Servers = servers
	if first == nil {
		return nil, urlReason, urlErr
	}
	return first, "", nil
}

// serverEvent emits an Event when a server's check result changed.
func (r *ProfileReconciler) serverEvent(p scepv1alpha1.Profile, previous *scepv1alpha1.SCEPProfileStatus, now scepv1alpha1.ServerStatus) {
	wasReady := true
	for _, s := range previous.Servers {
		if s.URL == now.URL {
			wasReady = s.Ready
		}
	}
	switch {
	case wasReady && !now.Ready:
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, EventServerUnavailable, "Check", "%s (%s); new transactions go to the profile's other servers", now.Message, now.Reason)
	case !wasReady && now.Ready:
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, EventServerAvailable, "Check", "%s answered again", now.URL)
	}
}

// readyMessage is the Ready condition's message of a profile that passed
// its check: which server answered (the first that passed), and which did
// not.
func readyMessage(p scepv1alpha1.Profile) string {
	status := p.GetStatus()
	answered := ""
	var down []string
	for _, s := range status.Servers {
		switch {
		case !s.Ready:
			down = append(down, fmt.Sprintf("%s (%s)", s.URL, s.Reason))
		case answered == "":
			answered = s.URL
		}
	}
	if answered == "" {
		answered = p.GetSpec().URL
	}
	msg := fmt.Sprintf("%s answered; %d CA/RA certificate(s) trusted", answered, len(status.CACertificates))
	if len(down) > 0 {
		msg += "; not answering as it should: " + strings.Join(down, ", ")
	}
	return msg
}

// shorten cuts s to at most n bytes.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
