package attack

import (
	"crypto/rand"
	"encoding/base64"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestForgedStateServer: the server a transaction is tied to (issue 13,
// failoverURLs) lives in the sealed state, which a tenant writes on the
// request or the Certificate. A state naming the tenant's own server, with a
// MAC the operator never computed, is ignored: the request's PKCSReq goes
// to the profile's url, nothing reaches the tenant's server, and nothing
// reaches the profile's failover server either.
func TestForgedStateServer(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{})
	standby := scepserver.Start(t, scepserver.Behavior{})
	evil, reached := listen(t, "127.0.0.1", scepserver.Start(t, scepserver.Behavior{}))
	p := clusterProfile(t, "attack-state-server", srv, func(s *scepv1alpha1.SCEPProfileSpec) {
		s.FailoverURLs = []string{standby.URL}
		s.AllowAnySubjectAltNames = true
	})
	mac := make([]byte, 32)
	if _, err := rand.Read(mac); err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	forged := enc.EncodeToString([]byte(`{"p":true,"t":"5f1d7c0a9e3b4d2c8a6f1e0b7d9c3a5e","u":"`+evil+`/scep"}`)) + "." + enc.EncodeToString(mac)
	runRequestRows(t, []*scepserver.Server{srv, standby}, []requestRow{
		{
			name: "forged PENDING state tying the transaction to the tenant's own server: ignored, sent to url",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return handMade(t, "state-server", p, csrPEM(t, newKey(t), fits("state-server")), func(cr *cmapi.CertificateRequest) {
					cr.Annotations = map[string]string{signer.AnnotationState: forged}
				})
			},
			want: verdict{issued: true, stateIgnored: true},
			then: func(t *testing.T, cr *cmapi.CertificateRequest, since []tally) {
				if n := reached(); n != 0 {
					t.Errorf("%d connection(s) reached the server the forged state named", n)
				}
				if after := tallyOf(standby); after.pkiOperations != since[1].pkiOperations {
					t.Errorf("the failover server got %d PKIOperation(s)", after.pkiOperations-since[1].pkiOperations)
				}
				if srv.PKIMessages("PKCSReq") == 0 {
					t.Error("url got no PKCSReq")
				}
			},
		},
	})
}
