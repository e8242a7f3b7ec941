package signer

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scep-operator/scep-operator/internal/scep"
)

// TransactionIDOf returns the transactionID the signer uses for cr, derived
// from its UID and its CSR's public key: what a person searches the SCEP
// server's logs for.
func TransactionIDOf(cr *cmapi.CertificateRequest) (scep.TransactionID, error) {
	block, _ := pem.Decode(cr.Spec.Request)
	if block == nil {
		return "", errors.New("spec.request holds no PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", err
	}
	return scep.DeriveTransactionID(string(cr.UID), csr.RawSubjectPublicKeyInfo), nil
}

// StateOf decodes the state annotation of a request (a CertificateRequest
// or a CertificateSigningRequest) for people and tests to read. It does not
// verify the seal: the signer never acts on what it returns.
func StateOf(obj metav1.Object) (State, bool) {
	p, _, ok := strings.Cut(obj.GetAnnotations()[AnnotationState], ".")
	if !ok {
		return State{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return State{}, false
	}
	var st State
	if json.Unmarshal(payload, &st) != nil {
		return State{}, false
	}
	return st, true
}
