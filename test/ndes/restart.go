package ndes

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/scep-operator/scep-operator/test/scepserver"
)

// Kill stops the emulator as a crashed or recycled IIS worker process
// stops: the listener closes and every connection, even one whose request
// NDES is working on, is cut without an answer. Connections are then
// refused until Restart. What NDES keeps in the CA's database survives:
// the SCEP server's transactions (pending, issued, rejected), the issued
// certificates, the CA and RA keys, the one-time passwords.
func (s *Server) Kill() { scepserver.Kill(s.listener()) }

// Restart serves again on the address (and, with TLS, the certificate) the
// emulator had, after Kill, with everything Kill says survives: a request
// left PENDING before the kill is answered by CertPoll afterwards, and an
// approved one gets its certificate.
func (s *Server) Restart() error {
	srv, err := scepserver.ServeAgain(s.listener(), &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ConnContext: connContext})
	if err != nil {
		return fmt.Errorf("ndes: %w", err)
	}
	s.mu.Lock()
	s.HTTP = srv
	s.mu.Unlock()
	return nil
}

// listener is the httptest server now serving.
func (s *Server) listener() *httptest.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.HTTP
}
