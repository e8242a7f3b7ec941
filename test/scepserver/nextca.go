package scepserver

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"github.com/smallstep/pkcs7"
)

// OpGetNextCACert is RFC 8894 section 4.7's operation for a CA rollover.
const OpGetNextCACert = "GetNextCACert"

// nextCA is a CA certificate announced through GetNextCACert before it
// replaces the current one, and who signs the announcement.
type nextCA struct {
	cert     *x509.Certificate
	key      *rsa.PrivateKey
	signCert *x509.Certificate // nil: the current CA (or RA signing under RASplit)
	signKey  crypto.Signer
}

// AnnounceNextCA prepares a CA rollover as RFC 8894 section 4.7 describes
// it: a new CA key and certificate are made, GetCACaps lists GetNextCACert,
// and GetNextCACert answers with the new CA certificate in a degenerate
// PKCS#7, signed by the current CA (by the RA signing certificate under
// RASplit, as NDES would). GetCACert keeps serving the current CA until
// RolloverCA, which then switches to this one.
func (s *Server) AnnounceNextCA() (*x509.Certificate, error) {
	return s.announce(nil, nil)
}

// AnnounceNextCASignedBy is AnnounceNextCA with the announcement signed by
// signer and key instead of the current CA: a forged announcement, e.g.
// signed with a workload certificate this CA issued, which a client must
// refuse.
func (s *Server) AnnounceNextCASignedBy(signer *x509.Certificate, key crypto.Signer) (*x509.Certificate, error) {
	if signer == nil || key == nil {
		return nil, errors.New("scepserver: AnnounceNextCASignedBy needs a certificate and its key")
	}
	return s.announce(signer, key)
}

func (s *Server) announce(signer *x509.Certificate, key crypto.Signer) (*x509.Certificate, error) {
	s.mu.Lock()
	serial, cn := s.CA.SerialNumber.Int64()+1, s.CA.Subject.CommonName+" (next)"
	s.mu.Unlock()
	ca, caKey, err := newCA(serial, cn)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.next = &nextCA{cert: ca, key: caKey, signCert: signer, signKey: key}
	s.mu.Unlock()
	return ca, nil
}

// NextCA returns the announced next CA certificate, nil when none is.
func (s *Server) NextCA() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == nil {
		return nil
	}
	return s.next.cert
}

// getNextCACert answers GetNextCACert: the announced CA in a degenerate
// PKCS#7 wrapped in a SignedData signed by the current CA or RA; HTTP 404
// when no rollover is announced.
func (s *Server) getNextCACert(b Behavior) reply {
	s.mu.Lock()
	next := s.next
	var (
		cert *x509.Certificate
		key  crypto.Signer
		err  error
	)
	switch {
	case next == nil:
	case next.signCert != nil:
		cert, key = next.signCert, next.signKey
	case b.RASplit:
		var ra *raCerts
		if ra, err = s.raLocked(); err == nil {
			cert, key = ra.sign, ra.signKey
		}
	default:
		cert, key = s.CA, s.CAKey
	}
	s.mu.Unlock()
	if next == nil {
		return textReply(http.StatusNotFound, "no next CA certificate")
	}
	if err != nil {
		return textReply(http.StatusInternalServerError, err.Error())
	}
	deg, err := degenerate([]*x509.Certificate{next.cert}, nil)
	if err != nil {
		return textReply(http.StatusInternalServerError, err.Error())
	}
	sd, err := pkcs7.NewSignedData(deg)
	if err != nil {
		return textReply(http.StatusInternalServerError, err.Error())
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		return textReply(http.StatusInternalServerError, fmt.Sprintf("signing GetNextCACert: %v", err))
	}
	der, err := sd.Finish()
	if err != nil {
		return textReply(http.StatusInternalServerError, err.Error())
	}
	return reply{status: http.StatusOK, contentType: "application/x-x509-next-ca-cert", body: der}
}
