package controllers

import (
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
)

// TestOneIssuedEvent: issuer-lib's own Issued Event is dropped (the
// signer's SCEPIssued says the same and more); its other Events and the
// signer's pass.
func TestOneIssuedEvent(t *testing.T) {
	fake := events.NewFakeRecorder(10)
	r := oneIssuedEvent{fake}
	cr := &cmapi.CertificateRequest{}
	r.Eventf(cr, nil, corev1.EventTypeNormal, "SCEPIssued", "Sign", "issued by %q, serial %s (transaction %s)", "CN=CA", "1f", "ABC")
	r.Eventf(cr, nil, corev1.EventTypeNormal, libraryIssuedReason, "Sync", "Succeeded signing the CertificateRequest")
	r.Eventf(cr, nil, corev1.EventTypeWarning, "RetryableError", "Sync", "Failed to sign CertificateRequest, will retry: %s", "x")
	r.Eventf(cr, nil, corev1.EventTypeWarning, libraryIssuedReason, "Sync", "a Warning with that reason is not the success Event")
	close(fake.Events)
	var got []string
	for e := range fake.Events {
		got = append(got, e)
	}
	want := []string{
		`Normal SCEPIssued issued by "CN=CA", serial 1f (transaction ABC)`,
		"Warning RetryableError Failed to sign CertificateRequest, will retry: x",
		"Warning Issued a Warning with that reason is not the success Event",
	}
	if len(got) != len(want) {
		t.Fatalf("Events %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Event %d = %q, want %q", i, got[i], want[i])
		}
	}
}
