package controllers_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/ndes"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stepca"
)

// TestRenewalReq: with renewWithRenewalReq, a Certificate's first
// certificate is a PKCSReq (its Secret does not exist yet, and the Event
// says so), and its renewal is a RenewalReq signed with the certificate in
// its Secret, as the servers count it: the emulator, MicroMDM and step-ca,
// which all list Renewal.
func TestRenewalReq(t *testing.T) {
	parallel(t)
	t.Run("emulator", func(t *testing.T) {
		parallel(t)
		ns := namespace(t)
		startManager(t)
		srv := scepserver.Start(t, scepserver.Behavior{})
		p := renewalProfile(t, ns, srv.URL, nil)
		first, _ := renewFlow(t, ns, p, srv.PKIMessages, srv.CA)
		last, ok := srv.LastPKIRequest()
		if !ok || last.MessageType != "RenewalReq" || !last.Signer.Equal(first) {
			t.Errorf("the last pkiMessage is a %s signed by %v; want a RenewalReq signed with the current certificate", last.MessageType, last.Signer.Subject)
		}
	})
	t.Run("MicroMDM", func(t *testing.T) {
		parallel(t)
		ns := namespace(t)
		startManager(t)
		srv := micromdm.Start(t, micromdm.Options{})
		renewFlow(t, ns, renewalProfile(t, ns, srv.URL, nil), srv.PKIMessages, srv.CA)
	})
	t.Run("step-ca", func(t *testing.T) {
		parallel(t)
		ns := namespace(t)
		startManager(t)
		srv := stepca.Start(t, stepca.Options{IncludeRoot: true})
		proxy, count := countingProxy(t, srv)
		p := renewalProfile(t, ns, proxy, nil)
		// step-ca counts nothing: a proxy in front of it does.
		renewFlow(t, ns, p, count, srv.Root)
	})
}

// TestRenewalReqFallsBack: a renewal whose current certificate cannot sign
// a RenewalReq (another CA's) is a fresh enrollment whose Event says why;
// without renewWithRenewalReq, renewals are PKCSReqs.
func TestRenewalReqFallsBack(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	startManager(t)
	srv := scepserver.Start(t, scepserver.Behavior{})
	other := scepserver.Start(t, scepserver.Behavior{})
	p := renewalProfile(t, ns, srv.URL, nil)
	certificateFor(t, ns, "app", p)
	foreign, key := mint(t, other, "app", 3)
	tlsSecret(t, ns, "app", foreign, key)
	cr := waitRequest(t, approvedCertRequest(t, p, "app", 1, 4), 60*time.Second)
	issued(t, cr, srv.CA)
	if n := srv.PKIMessages("RenewalReq"); n != 0 {
		t.Errorf("%d RenewalReq signed with another CA's certificate", n)
	}
	waitRequestEvent(t, cr, "SCEPIssued", "not a RenewalReq: the current certificate in Secret "+ns+"/app-tls was not issued by the CA of the profile's server")
}

func renewalProfile(t *testing.T, ns, url string, change func(*scepv1alpha1.SCEPProfileSpec)) *scepv1alpha1.SCEPProfile {
	t.Helper()
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "renewing"},
		Spec:       scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: url, RenewWithRenewalReq: true, RetryInterval: duration(time.Second)},
	}
	if change != nil {
		change(&p.Spec)
	}
	if err := apiServer(t).Client.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 60*time.Second)
	return p
}

// renewFlow issues Certificate "app" twice through p: first by PKCSReq,
// then, with the first certificate in its Secret as cert-manager keeps it,
// by RenewalReq; count counts the server's messages by type. It returns
// the two certificates.
func renewFlow(t *testing.T, ns string, p scepv1alpha1.Profile, count func(string) int, roots ...*x509.Certificate) (*x509.Certificate, *x509.Certificate) {
	t.Helper()
	certificateFor(t, ns, "app", p)
	cr1 := waitRequest(t, approvedCertRequest(t, p, "app", 1, 7), 60*time.Second)
	first := issued(t, cr1, roots...)
	waitRequestEvent(t, cr1, "SCEPIssued", "not a RenewalReq: Certificate "+ns+"/app has no Secret app-tls yet")
	if n := count("RenewalReq"); n != 0 {
		t.Fatalf("the first issuance counted %d RenewalReq", n)
	}
	pkcsReqs := count("PKCSReq")
	tlsSecret(t, ns, "app", first, rsaKey(2048, 7))

	cr2 := waitRequest(t, approvedCertRequest(t, p, "app", 2, 8), 60*time.Second)
	second := issued(t, cr2, roots...)
	eventually(t, 10*time.Second, "the server to count the RenewalReq", func() (bool, string) {
		return count("RenewalReq") == 1 && count("PKCSReq") == pkcsReqs, "not yet"
	})
	waitRequestEvent(t, cr2, "SCEPIssued", "RenewalReq sent to ")
	return first, second
}

// certificateFor makes the Certificate cert-manager would hold for name.
func certificateFor(t *testing.T, ns, name string, p scepv1alpha1.Profile) {
	t.Helper()
	cert := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       cmapi.CertificateSpec{SecretName: name + "-tls", IssuerRef: refTo(p), CommonName: name},
	}
	if err := apiServer(t).Client.Create(t.Context(), cert); err != nil {
		t.Fatal(err)
	}
}

// approvedCertRequest is revision rev of Certificate name, for the i-th key.
func approvedCertRequest(t *testing.T, p scepv1alpha1.Profile, name string, rev, i int) *cmapi.CertificateRequest {
	t.Helper()
	ann := map[string]string{cmapi.CertificateNameKey: name}
	cr := request(t, p.GetNamespace(), name+"-"+strconv.Itoa(rev), refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: name}}, rsaKey(2048, i)), ann)
	setApproval(t, cr, true)
	return cr
}

// tlsSecret stores crt and key as cert-manager keeps Certificate name's.
func tlsSecret(t *testing.T, ns, name string, crt *x509.Certificate, key *rsa.PrivateKey) {
	t.Helper()
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-tls", Annotations: map[string]string{cmapi.CertificateNameKey: name}},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: crt.Raw}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		},
	}
	if err := apiServer(t).Client.Create(t.Context(), sec); err != nil {
		t.Fatal(err)
	}
}

// mint has srv's CA issue a certificate for cn to the i-th key.
func mint(t *testing.T, srv *scepserver.Server, cn string, i int) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key := rsaKey(2048, i)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(1000 + i)), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, srv.CA, &key.PublicKey, srv.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	crt, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return crt, key
}

// waitRequestEvent waits for an Event of reason on cr whose note contains note.
func waitRequestEvent(t *testing.T, cr *cmapi.CertificateRequest, reason, note string) {
	t.Helper()
	eventually(t, 30*time.Second, "a "+reason+" Event on "+cr.Name+" saying "+note, func() (bool, string) {
		evs, err := profileEvents(t, cr.Namespace, cr.Name)
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs {
			if e.Reason == reason && strings.Contains(e.Note, note) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Note)
		}
		return false, strings.Join(seen, " | ")
	})
}

// countingProxy is a plain-http SCEP endpoint in front of step-ca that
// counts the pkiMessages it forwards by type.
func countingProxy(t *testing.T, srv *stepca.Server) (string, func(string) int) {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	target := srv.HTTPClient()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if r.Method == http.MethodPost {
			mu.Lock()
			counts[micromdm.MessageTypeOf(body)]++
			mu.Unlock()
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, srv.URL+"?"+r.URL.RawQuery, bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
		resp, err := target.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
	proxy := httptest.NewServer(h)
	t.Cleanup(proxy.Close)
	return proxy.URL + "/scep", func(kind string) int {
		mu.Lock()
		defer mu.Unlock()
		return counts[kind]
	}
}

// TestRenewalReqNDES: with NDES's Dynamic challenge, a renewal by
// RenewalReq fetches no one-time password (NDES authenticates a RenewalReq
// by the certificate that signs it), while the first enrollment spent one.
func TestRenewalReqNDES(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := startNDES(t, ndes.Options{})
	startManager(t)
	ndesCredentials(t, ns, "ndes-agent", ndesUser, ndes.DefaultPassword)
	spec := ndesDynamicSpec(srv, "NTLM", "ndes-agent")
	spec.RenewWithRenewalReq = true
	p := ndesProfile(t, ns, "ndes-renew", spec, nil)
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	first := issued(t, waitRequest(t, ndesRequest(t, ns, p, "router", 0, "router"), 60*time.Second), srv.CA)
	tlsSecret(t, ns, "router", first, rsaKey(2048, 0))

	// cert-manager's next pending key, then its request for the renewal.
	c := apiServer(t).Client
	next := rsaKey(2048, 9)
	der, err := x509.MarshalPKCS8PrivateKey(next)
	if err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "router-next"}, sec); err != nil {
		t.Fatal(err)
	}
	sec.Data[corev1.TLSPrivateKeyKey] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := c.Update(t.Context(), sec); err != nil {
		t.Fatal(err)
	}
	csr := csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "router"}, DNSNames: []string{"router.example"}}, next)
	cr := request(t, ns, "router-2", refTo(p), csr, map[string]string{cmapi.CertificateNameKey: "router"})
	setApproval(t, cr, true)
	issued(t, waitRequest(t, cr, 60*time.Second), srv.CA)

	cnt := srv.Counters()
	if renewals := srv.SCEP.PKIMessages("RenewalReq"); renewals != 1 || cnt.PKCSReq != 1 || cnt.PasswordsIssued != 1 {
		t.Errorf("RenewalReq %d, PKCSReq %d, passwords issued %d; want 1, 1, 1 (none for the RenewalReq)", renewals, cnt.PKCSReq, cnt.PasswordsIssued)
	}
}
