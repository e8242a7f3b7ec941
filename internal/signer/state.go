package signer

import (
	"crypto/x509"
	"encoding/base64"
	"maps"
	"strconv"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/scep-operator/scep-operator/internal/scep"
)

// The transaction state is kept in annotations of the CertificateRequest, so
// an operator restart resumes a transaction instead of enrolling twice. It is
// written before the first PKIOperation. Nothing secret is stored: the signer
// certificate is public and its key stays where it was (the profile's signer
// Secret or the workload's pending key Secret).
const (
	// AnnotationTransactionID is the SCEP transactionID.
	AnnotationTransactionID = "scep.certificates.dev/transaction-id"
	// AnnotationSignerCertificate is the base64 DER of the certificate that
	// signed the PKCSReq; CertPoll must use the same signer.
	AnnotationSignerCertificate = "scep.certificates.dev/signer-certificate"
	// AnnotationState is Sending (PKCSReq built, reply not seen) or Pending
	// (the server answered PENDING; poll with CertPoll).
	AnnotationState = "scep.certificates.dev/state"
	// AnnotationFailedAttempts counts failed attempts toward maxAttempts.
	AnnotationFailedAttempts = "scep.certificates.dev/failed-attempts"
	// AnnotationNextAttempt is when the next attempt or poll may happen (RFC 3339).
	AnnotationNextAttempt = "scep.certificates.dev/next-attempt"
	// AnnotationPendingSince is when the server first answered PENDING (RFC 3339).
	AnnotationPendingSince = "scep.certificates.dev/pending-since"
	// AnnotationLastError is the last failed attempt's error, shortened.
	AnnotationLastError = "scep.certificates.dev/last-error"
)

// The values of AnnotationState.
const (
	StateSending = "Sending"
	StatePending = "Pending"
)

// state is the transaction as persisted on the request.
type state struct {
	TransactionID  scep.TransactionID
	SignerCert     *x509.Certificate
	Phase          string
	FailedAttempts int
	NextAttempt    time.Time
	PendingSince   time.Time
	LastError      string
}

func readState(cr *cmapi.CertificateRequest) state {
	a := cr.Annotations
	st := state{TransactionID: scep.TransactionID(a[AnnotationTransactionID]), Phase: a[AnnotationState], LastError: a[AnnotationLastError]}
	if der, err := base64.StdEncoding.DecodeString(a[AnnotationSignerCertificate]); err == nil && len(der) > 0 {
		st.SignerCert, _ = x509.ParseCertificate(der)
	}
	st.FailedAttempts, _ = strconv.Atoi(a[AnnotationFailedAttempts])
	st.NextAttempt, _ = time.Parse(time.RFC3339Nano, a[AnnotationNextAttempt])
	st.PendingSince, _ = time.Parse(time.RFC3339Nano, a[AnnotationPendingSince])
	return st
}

// write puts st into annotations (a nil map is allocated).
func (st state) write(cr *cmapi.CertificateRequest) {
	if cr.Annotations == nil {
		cr.Annotations = map[string]string{}
	}
	set := func(k, v string) {
		if v == "" {
			delete(cr.Annotations, k)
		} else {
			cr.Annotations[k] = v
		}
	}
	set(AnnotationTransactionID, string(st.TransactionID))
	if st.SignerCert != nil {
		set(AnnotationSignerCertificate, base64.StdEncoding.EncodeToString(st.SignerCert.Raw))
	}
	set(AnnotationState, st.Phase)
	if st.FailedAttempts > 0 {
		set(AnnotationFailedAttempts, strconv.Itoa(st.FailedAttempts))
	} else {
		set(AnnotationFailedAttempts, "")
	}
	set(AnnotationNextAttempt, formatTime(st.NextAttempt))
	set(AnnotationPendingSince, formatTime(st.PendingSince))
	set(AnnotationLastError, st.LastError)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// OnlyStateChanged reports whether the only difference between two versions
// of a CertificateRequest is the transaction state this package writes (its
// annotations), resourceVersion and managedFields aside. Sign writes that
// state itself and asks for its own requeue, so such an update needs no
// reconcile; without this filter, issuer-lib reconciled it (its predicate
// fires on any annotation change) and, the request being issued meanwhile,
// set it Issued a second time: a fresh read, a status patch and an Event
// more per enrollment.
func OnlyStateChanged(before, after *cmapi.CertificateRequest) bool {
	if before == nil || after == nil || maps.Equal(before.Annotations, after.Annotations) {
		return false
	}
	a, b := before.DeepCopy(), after.DeepCopy()
	for _, cr := range []*cmapi.CertificateRequest{a, b} {
		cr.ResourceVersion, cr.ManagedFields = "", nil
		maps.DeleteFunc(cr.Annotations, func(k, _ string) bool { return stateAnnotations[k] })
		if len(cr.Annotations) == 0 {
			cr.Annotations = nil
		}
	}
	return equality.Semantic.DeepEqual(a, b)
}

// stateAnnotations are the annotations of the transaction state (not, for
// instance, scep.certificates.dev/email, which a user sets).
var stateAnnotations = map[string]bool{
	AnnotationTransactionID: true, AnnotationSignerCertificate: true, AnnotationState: true,
	AnnotationFailedAttempts: true, AnnotationNextAttempt: true, AnnotationPendingSince: true, AnnotationLastError: true,
}
