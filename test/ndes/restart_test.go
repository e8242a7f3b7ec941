package ndes_test

import (
	"net/http"
	"testing"

	"github.com/smallstep/scep"

	"github.com/scep-operator/scep-operator/test/ndes"
)

// TestKillRestartKeepsTransactions: a request PENDING when the emulator is
// killed is still pending after Restart (same URL), and once approved its
// CertPoll gets the certificate; only one PKCSReq was ever counted.
func TestKillRestartKeepsTransactions(t *testing.T) {
	s := ndes.Start(t, ndes.Options{ManualApproval: true})
	c := newSCEPClient(t, s, password(t, s))
	req := c.pkcsReq(t)
	txID := string(req.TransactionID)
	if rep, _ := c.send(t, req.Raw); rep.PKIStatus != scep.PENDING {
		t.Fatalf("PKCSReq: %q, want PENDING", rep.PKIStatus)
	}

	s.Kill()
	if resp, err := http.Get(s.URL + "?operation=GetCACaps"); err == nil {
		resp.Body.Close()
		t.Fatal("GetCACaps answered while the emulator was killed")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := s.PendingTransactions(); len(got) != 1 || got[0] != txID {
		t.Fatalf("PendingTransactions after Restart = %q, want [%s]", got, txID)
	}
	if rep, _ := c.send(t, c.certPoll(t, txID)); rep.PKIStatus != scep.PENDING {
		t.Fatalf("CertPoll after Restart: %q, want PENDING", rep.PKIStatus)
	}
	if err := s.Approve(txID); err != nil {
		t.Fatal(err)
	}
	rep, _ := c.send(t, c.certPoll(t, txID))
	if rep.PKIStatus != scep.SUCCESS {
		t.Fatalf("CertPoll after Approve: %q", rep.PKIStatus)
	}
	c.checkIssued(t, rep)
	if n := s.Counters().PKCSReq; n != 1 {
		t.Errorf("PKCSReq count %d, want 1", n)
	}
}
