package signer

import (
	"encoding/base64"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStateServer: the server a transaction went to round-trips through
// the sealed state, a tenant cannot move it (the MAC covers it), and a state
// sealed before the field existed still opens, with no server.
func TestStateServer(t *testing.T) {
	s := &Signer{StateKey: []byte("0123456789abcdef0123456789abcdef")}
	cr := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{UID: "uid-1"}}
	s.write(cr, State{Pending: true, Server: "http://ndes-2.corp.example/certsrv/mscep/mscep.dll"})
	if got, err := s.open(cr); err != nil || got.Server != "http://ndes-2.corp.example/certsrv/mscep/mscep.dll" {
		t.Fatalf("round trip: %+v, %v", got, err)
	}

	// What an operator before failover sealed: no "u".
	payload := []byte(`{"p":true,"a":1,"t":"AB"}`)
	enc := base64.RawURLEncoding
	old := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{UID: "uid-1", Annotations: map[string]string{
		AnnotationState: enc.EncodeToString(payload) + "." + enc.EncodeToString(s.stateMAC("uid-1", payload)),
	}}}
	got, err := s.open(old)
	if err != nil || !got.Pending || got.FailedAttempts != 1 || got.Server != "" {
		t.Fatalf("a state sealed before failover: %+v, %v", got, err)
	}

	// Another server, the old MAC: refused.
	moved := []byte(`{"p":true,"a":1,"t":"AB","u":"http://attacker.example/scep"}`)
	old.Annotations[AnnotationState] = enc.EncodeToString(moved) + "." + enc.EncodeToString(s.stateMAC("uid-1", payload))
	if got, err := s.open(old); err == nil {
		t.Fatalf("a server written into the state without the key was accepted: %+v", got)
	}
}
