package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// libraryIssuedReason is the reason of the Event issuer-lib records when it
// sets a request Issued.
const libraryIssuedReason = "Issued"

// oneIssuedEvent is the recorder issuer-lib's request controllers get: it
// drops issuer-lib's own Normal "Issued" Event ("Succeeded signing the
// CertificateRequest"), because the signer has just recorded SCEPIssued,
// which says more (the issuer, the serial and the transactionID). One Event
// per enrollment rather than two: each is a write the API server stores
// and every Event watcher decodes. Every other Event of issuer-lib (waiting
// for the issuer, retryable and permanent errors) passes.
type oneIssuedEvent struct{ events.EventRecorder }

// Eventf records the Event unless it is issuer-lib's Issued.
func (r oneIssuedEvent) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if eventtype == corev1.EventTypeNormal && reason == libraryIssuedReason {
		return
	}
	r.EventRecorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
}
