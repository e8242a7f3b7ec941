package signer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AnnotationState holds what the signer must remember of a request between
// calls: a PENDING answer being polled, failed attempts and when to try
// again. It is written only when such a thing happens (never before a
// PKCSReq: the transactionID and the signer certificate are derived from
// the request, so a restart needs nothing stored to resume).
//
// Tenants can write annotations (on the request, or on the Certificate that
// cert-manager copies them from), so the value is sealed: base64url(JSON)
// "." base64url(HMAC-SHA256), the MAC over the request's UID and the JSON,
// keyed by a Secret in the operator's namespace. A value that does not
// verify for this very request is ignored. Replaying an older value of the
// same request gains nothing a new request would not: attempts are per
// request.
const AnnotationState = "scep.certificates.dev/state"

// State is the transaction state as sealed on the request.
type State struct {
	// Pending: the server answered PENDING; poll with CertPoll.
	Pending bool `json:"p,omitempty"`
	// FailedAttempts counts failed attempts toward maxAttempts.
	FailedAttempts int `json:"a,omitempty"`
	// NextAttempt is when the next attempt or poll may happen.
	NextAttempt time.Time `json:"n,omitzero"`
	// PendingSince is when the server first answered PENDING.
	PendingSince time.Time `json:"s,omitzero"`
	// LastError is the last failed attempt's error, shortened.
	LastError string `json:"e,omitempty"`
	// TransactionID is informational, for a person reading the request;
	// the signer derives the transactionID and never reads this one.
	TransactionID string `json:"t,omitempty"`
	// Server is the SCEP server (the profile's url or a failoverURLs
	// entry) this transaction's PKCSReq went to: its CertPolls and retries
	// go only there. Empty: not sent anywhere yet; a state written before
	// failover existed has none, and its PENDING transaction is the url's.
	Server string `json:"u,omitempty"`
	// Renewal: the transaction is a RenewalReq, so its CertPolls are signed
	// with the Certificate's current certificate, as the RenewalReq was.
	Renewal bool `json:"r,omitempty"`
}

// stateMACContext separates these MACs from any other use of the key.
const stateMACContext = "scep-operator request state v1\x00"

func (s *Signer) stateMAC(uid types.UID, payload []byte) []byte {
	m := hmac.New(sha256.New, s.stateKey())
	m.Write([]byte(stateMACContext))
	m.Write([]byte(uid))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)
}

// seal returns the annotation value of st for the request uid.
func (s *Signer) seal(uid types.UID, st State) string {
	payload, _ := json.Marshal(st) // a struct of plain fields always encodes
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(s.stateMAC(uid, payload))
}

// errStateForged: the annotation was not written by this operator for this
// request.
var errStateForged = errors.New("the state annotation was not written by the operator for this request")

// open reads the state sealed on obj; no annotation is the zero state.
func (s *Signer) open(obj metav1.Object) (State, error) {
	v := obj.GetAnnotations()[AnnotationState]
	if v == "" {
		return State{}, nil
	}
	if len(v) > maxStateLength {
		return State{}, errStateForged
	}
	p, m, ok := strings.Cut(v, ".")
	if !ok {
		return State{}, errStateForged
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p)
	mac, err2 := enc.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.stateMAC(obj.GetUID(), payload)) {
		return State{}, errStateForged
	}
	var st State
	if err := json.Unmarshal(payload, &st); err != nil || st.FailedAttempts < 0 {
		return State{}, errStateForged
	}
	return st, nil
}

// maxStateLength bounds what open reads: the signer writes far less.
const maxStateLength = 4096

// write puts st, sealed, into obj's annotations.
func (s *Signer) write(obj metav1.Object, st State) {
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[AnnotationState] = s.seal(obj.GetUID(), st)
	obj.SetAnnotations(a)
}

// OnlyStateChanged reports whether the only difference between two versions
// of a request (a CertificateRequest or a CertificateSigningRequest) is the
// state annotation this package writes, resourceVersion and managedFields
// aside. Sign writes that state itself and asks for its own requeue, so
// such an update needs no reconcile; without this filter, issuer-lib
// reconciled it (its predicate fires on any annotation change) and, the
// request being issued meanwhile, set it Issued a second time: a fresh
// read, a status patch and an Event more per enrollment. A tenant changing
// the annotation gains nothing from the filter: the next reconcile reads it
// and ignores it unless sealed.
func OnlyStateChanged(before, after client.Object) bool {
	if isNil(before) || isNil(after) || maps.Equal(before.GetAnnotations(), after.GetAnnotations()) {
		return false
	}
	a, okA := before.DeepCopyObject().(client.Object)
	b, okB := after.DeepCopyObject().(client.Object)
	if !okA || !okB {
		return false
	}
	for _, obj := range []client.Object{a, b} {
		obj.SetResourceVersion("")
		obj.SetManagedFields(nil)
		ann := obj.GetAnnotations()
		delete(ann, AnnotationState)
		if len(ann) == 0 {
			ann = nil
		}
		obj.SetAnnotations(ann)
	}
	return equality.Semantic.DeepEqual(a, b)
}

// isNil says whether obj is nil or a typed nil pointer.
func isNil(obj client.Object) bool {
	return obj == nil || reflect.ValueOf(obj).IsNil()
}
