package interop

import (
	"testing"

	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/test/micromdm"
)

// BenchmarkEnrollMicroMDM measures whole enrollments (CSR with challenge,
// PKCSReq, one POST round trip, MicroMDM signing, reply verified and
// decrypted) against an in-process MicroMDM, with capabilities and CA
// certificates cached as the operator caches them.
func BenchmarkEnrollMicroMDM(b *testing.B) {
	srv := micromdm.Start(b, micromdm.Options{Challenge: "pw"})
	c := newClient(b, scepclient.Config{URL: srv.URL})
	info, err := c.Discover(ctxT(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	key := rsaKey(b, 2048, 0)
	signer, err := scep.NewSelfSignedSigner(key, nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	before := srv.Requests("PKIOperation") + srv.Requests("GetCACaps") + srv.Requests("GetCACert")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++ // a new subject each time: MicroMDM revokes a subject's previous certificate
		csr, err := scep.NewCSR(scep.CSRTemplate{Subject: name("bench-" + itoa(i)), ChallengePassword: "pw"}, key)
		if err != nil {
			b.Fatal(err)
		}
		msg, err := scep.NewPKCSReq(csr, info.MessageOptions(signer, ""))
		if err != nil {
			b.Fatal(err)
		}
		rep, err := c.Send(ctxT(b), info, msg)
		if err != nil || rep.Status != scep.StatusSuccess {
			b.Fatalf("%v %v", rep, err)
		}
	}
	after := srv.Requests("PKIOperation") + srv.Requests("GetCACaps") + srv.Requests("GetCACert")
	b.ReportMetric(float64(after-before)/float64(b.N), "roundtrips/op")
}

// BenchmarkReadReply measures verifying and decrypting one SUCCESS reply
// from MicroMDM: the client's share of an enrollment's CPU.
func BenchmarkReadReply(b *testing.B) {
	srv := micromdm.Start(b, micromdm.Options{})
	rec := &captureTransport{}
	c := newClient(b, scepclient.Config{URL: srv.URL, Transport: rec})
	info, err := c.Discover(ctxT(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	key := rsaKey(b, 2048, 0)
	csr, _ := scep.NewCSR(scep.CSRTemplate{Subject: name("bench")}, key)
	signer, _ := scep.NewSelfSignedSigner(key, nil, 0)
	msg, _ := scep.NewPKCSReq(csr, info.MessageOptions(signer, ""))
	if _, err := c.Send(ctxT(b), info, msg); err != nil {
		b.Fatal(err)
	}
	reply := rec.last
	trusted := info.CACerts.All()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := msg.ReadReply(reply, trusted); err != nil {
			b.Fatal(err)
		}
	}
}
