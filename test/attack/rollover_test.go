package attack

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestForgedNextCA: every tenant holds a certificate of the corporate CA
// and its key. With a position on the path to the SCEP server, they could
// announce a "next CA" of their own through GetNextCACert, signed with that
// workload certificate, and then serve it from GetCACert, so that
// challenge passwords are encrypted to them and their CertReps are
// believed. The announcement is refused (only the CA and RA certificates
// the pins trust may sign it), nothing of it reaches the status or the
// trust carried over a rollover, and the substituted CA meets the pin.
func TestForgedNextCA(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{})
	p := clusterProfile(t, "attack-next-ca", srv, nil)
	key := newKey(t)
	workload := issuedBy(t, srv, "app."+tenant, 4711, key)
	if _, err := srv.AnnounceNextCASignedBy(workload, key); err != nil {
		t.Fatal(err)
	}
	askCheck(t, p)
	waitEvent(t, "ClusterSCEPProfile", p, controllers.EventNextCAInvalid, "does not verify against the CA/RA certificates trusted now")
	if err := admin(t).Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
		t.Fatal(err)
	}
	if st := p.Status; len(st.NextCACertificates) != 0 || st.CARollover != nil {
		t.Fatalf("the forged next CA reached the status: next %+v, rollover %+v", st.NextCACertificates, st.CARollover)
	}

	before := tallyOf(srv)
	if _, err := srv.RolloverCA(); err != nil {
		t.Fatal(err)
	}
	askCheck(t, p)
	cond := waitProfile(t, p, metav1.ConditionFalse)
	if cond.Reason != controllers.ReasonFingerprintMismatch {
		t.Fatalf("Ready = %s: %s; want FingerprintMismatch", cond.Reason, cond.Message)
	}
	if after := tallyOf(srv); after != before {
		t.Errorf("pkiMessages reached the substituted CA: %+v, before %+v", after, before)
	}
}

// askCheck has the profile controller check p now (it watches annotations).
func askCheck(t *testing.T, p client.Object) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"test.scep.certificates.dev/recheck":%q}}}`, time.Now().Format(time.RFC3339Nano))
	if err := admin(t).Patch(t.Context(), p, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
}

// issuedBy has srv's CA issue a workload certificate (serial, cn) to key,
// as it would to any tenant.
func issuedBy(t *testing.T, srv *scepserver.Server, cn string, serial int64, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, srv.CA, &key.PublicKey, srv.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	crt, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return crt
}
