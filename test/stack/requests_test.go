package stack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/scep-operator/scep-operator/internal/signer"
)

func request(t *testing.T, name string) cmapi.CertificateRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name + "-uid")},
		Spec:       cmapi.CertificateRequestSpec{Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})},
	}
}

func txOf(t *testing.T, cr *cmapi.CertificateRequest) string {
	t.Helper()
	tx, err := signer.TransactionIDOf(cr)
	if err != nil {
		t.Fatal(err)
	}
	return string(tx)
}

// TestExactlyOnce: the accounting the install and failover tests rely on
// refuses a resend, a transaction no request derives and a request never
// sent, and tells a replaced revision apart.
func TestExactlyOnce(t *testing.T) {
	current, old, never := request(t, "a-2"), request(t, "a-1"), request(t, "b-1")
	l := &RequestLog{byTx: map[string]string{}}
	for _, cr := range []*cmapi.CertificateRequest{&current, &old, &never} {
		l.record(cr)
	}
	for _, tc := range []struct {
		name         string
		sent         map[string]int
		current      []cmapi.CertificateRequest
		problems     int
		replacements int
	}{
		{"one each", map[string]int{txOf(t, &current): 1}, []cmapi.CertificateRequest{current}, 0, 0},
		{"a replaced revision", map[string]int{txOf(t, &current): 1, txOf(t, &old): 1}, []cmapi.CertificateRequest{current}, 0, 1},
		{"a resend", map[string]int{txOf(t, &current): 2}, []cmapi.CertificateRequest{current}, 1, 0},
		{"a transaction nobody's", map[string]int{txOf(t, &current): 1, "made-up": 1}, []cmapi.CertificateRequest{current}, 1, 0},
		{"a request never sent", map[string]int{txOf(t, &current): 1}, []cmapi.CertificateRequest{current, never}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problems, replaced := l.ExactlyOnce(tc.sent, tc.current)
			if len(problems) != tc.problems || len(replaced) != tc.replacements {
				t.Errorf("problems %q, replaced %q: want %d and %d", problems, replaced, tc.problems, tc.replacements)
			}
		})
	}
}

func TestUnfinished(t *testing.T) {
	ready := func(status cmmeta.ConditionStatus, reason string) cmapi.CertificateRequestCondition {
		return cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionReady, Status: status, Reason: reason}
	}
	denied := cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionDenied, Status: cmmeta.ConditionTrue}
	var requests []cmapi.CertificateRequest
	for name, conditions := range map[string][]cmapi.CertificateRequestCondition{
		"new":            nil,
		"pending":        {ready(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonPending)},
		"issued":         {ready(cmmeta.ConditionTrue, cmapi.CertificateRequestReasonIssued)},
		"failed":         {ready(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonFailed)},
		"denied":         {denied, ready(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonDenied)},
		"denied-not-yet": {denied},
	} {
		requests = append(requests, cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Status:     cmapi.CertificateRequestStatus{Conditions: conditions},
		})
	}
	got := Unfinished(requests)
	slices.Sort(got)
	if want := []string{"ns/new", "ns/pending"}; !slices.Equal(got, want) {
		t.Errorf("Unfinished = %v, want %v", got, want)
	}
}
