package controllers_test

import (
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// concurrencyMeter counts the PKIOperations a server is handling at once.
type concurrencyMeter struct {
	next          http.Handler
	mu            sync.Mutex
	now, max, all int
}

func (m *concurrencyMeter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := r.URL.Query().Get("operation") == "PKIOperation"
	if op {
		m.mu.Lock()
		m.now++
		m.all++
		m.max = max(m.max, m.now)
		m.mu.Unlock()
		defer func() { m.mu.Lock(); m.now--; m.mu.Unlock() }()
	}
	m.next.ServeHTTP(w, r)
}

// TestMaxConcurrentRequests: a burst of requests for one profile never has
// more than maxConcurrentRequests in flight at the (slow) server; all are
// issued, each enrolled once.
func TestMaxConcurrentRequests(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := scepserver.Start(t, scepserver.Behavior{Delay: 150 * time.Millisecond, FaultOperations: []string{scepserver.OpPKIOperation}})
	meter := &concurrencyMeter{next: srv}
	front := httptest.NewServer(meter)
	t.Cleanup(front.Close)
	startManager(t)
	c := apiServer(t).Client
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "burst"},
		Spec:       scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: front.URL + "/scep", MaxConcurrentRequests: 2},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)

	const n = 12
	var crs []*cmapi.CertificateRequest
	for i := 0; i < n; i++ {
		cr := request(t, ns, fmt.Sprintf("burst-%d", i), refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: fmt.Sprintf("burst-%d", i)}}, rsaKey(2048, i%4)), nil)
		setApproval(t, cr, true)
		crs = append(crs, cr)
	}
	for _, cr := range crs {
		issued(t, waitRequest(t, cr, 60*time.Second), srv.CA)
	}
	meter.mu.Lock()
	defer meter.mu.Unlock()
	if meter.max > 2 {
		t.Errorf("%d PKIOperations were in flight at once, over maxConcurrentRequests 2", meter.max)
	}
	if meter.max < 2 {
		t.Logf("never more than %d in flight (the limit was not reached)", meter.max)
	}
	if meter.all != n || srv.PKIMessages("PKCSReq") != n {
		t.Errorf("server saw %d PKIOperations and %d PKCSReq for %d requests", meter.all, srv.PKIMessages("PKCSReq"), n)
	}
}
