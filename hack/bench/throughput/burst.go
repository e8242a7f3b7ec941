package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// inFlightMeter counts the PKIOperations the SCEP server is handling at once.
type inFlightMeter struct {
	next          http.Handler
	mu            sync.Mutex
	now, max, all int
}

func (m *inFlightMeter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("operation") == scepserver.OpPKIOperation {
		m.mu.Lock()
		m.now++
		m.all++
		m.max = max(m.max, m.now)
		m.mu.Unlock()
		defer func() { m.mu.Lock(); m.now--; m.mu.Unlock() }()
	}
	m.next.ServeHTTP(w, r)
}

// runBurst submits burstN CertificateRequests at once to one profile with
// maxConcurrentRequests = limit, against test/scepserver (in this process,
// holding each PKIOperation for delay), and checks at the server: never more
// than limit in flight, one PKCSReq per request, each request's CSR issued
// exactly once, all requests Ready.
func (b *bench) runBurst(ctx context.Context) error {
	o := b.opts
	srv, err := scepserver.New(scepserver.Behavior{Delay: o.delay, FaultOperations: []string{scepserver.OpPKIOperation}})
	if err != nil {
		return err
	}
	defer srv.Close()
	meter := &inFlightMeter{next: srv}
	front := httptest.NewServer(meter)
	defer front.Close()

	const ns = "burst"
	if err := b.env.CreateNamespace(ctx, ns); err != nil {
		return err
	}
	progress("starting the operator (cmd/manager, own process)")
	op, err := b.startOperator(ctx, "operator-burst")
	if err != nil {
		return err
	}
	defer op.stop()
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "burst"},
		Spec:       scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: front.URL + "/scep", MaxConcurrentRequests: int32(o.limit)},
	}
	if err := b.c.Create(ctx, p); err != nil {
		return err
	}
	if err := waitFor(ctx, 2*time.Minute, "the SCEPProfile to be Ready", func() (bool, error) {
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(p.Status.Conditions, "Ready"), nil
	}); err != nil {
		return err
	}

	// CSRs as cert-manager makes them, each with its own subject; 16 keys
	// are reused (generating 1,000 would take minutes), which is fine since
	// the operator's transactionIDs are random, not derived from the key.
	progress("making %d CSRs", o.burstN)
	keys := make([]*rsa.PrivateKey, 16)
	for i := range keys {
		if keys[i], err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return err
		}
	}
	csrs := make([][]byte, o.burstN)
	for i := range csrs {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: burstName(i)}, DNSNames: []string{burstName(i) + ".bench.example"}}, keys[i%len(keys)])
		if err != nil {
			return err
		}
		csrs[i] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}

	loadStart := loadAverage()
	cpuProcs := map[string]int{"operator": op.pid(), "cert-manager": b.cm.pid(), "kube-apiserver": b.apiserver, "etcd": b.etcd, "bench (SCEP server, load)": os.Getpid()}
	cpu0, err := cpuOf(cpuProcs)
	if err != nil {
		return err
	}
	finished := watchDone(ctx, b.c, ns, func() client.ObjectList { return &cmapi.CertificateRequestList{} }, func(o client.Object) bool {
		cr, ok := o.(*cmapi.CertificateRequest)
		if !ok {
			return false
		}
		for _, c := range cr.Status.Conditions {
			if c.Type == cmapi.CertificateRequestConditionReady && (c.Status == cmmeta.ConditionTrue || c.Reason == cmapi.CertificateRequestReasonFailed) {
				return true
			}
		}
		return false
	})
	defer finished.stop()
	progress("submitting %d CertificateRequests at once (maxConcurrentRequests %d, server delay %s)", o.burstN, o.limit, o.delay)
	api0, err := op.apiRequests()
	if err != nil {
		return err
	}
	profileDone := b.startProfile("operator", "burst", op.pprof, 60)
	start := time.Now()
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				cr := &cmapi.CertificateRequest{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: burstName(i)},
					Spec: cmapi.CertificateRequestSpec{
						IssuerRef: cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: "SCEPProfile", Name: p.Name},
						Request:   csrs[i],
						Usages:    []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment},
					},
				}
				if err := b.c.Create(ctx, cr); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range o.burstN {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	submitted := time.Since(start)

	err = waitFor(ctx, 30*time.Minute, "every CertificateRequest to finish", func() (bool, error) {
		got := finished.count("burst")
		return got == o.burstN, fmt.Errorf("%d of %d finished", got, o.burstN)
	})
	var last time.Time
	for i := range o.burstN {
		if at := finished.readyAt(burstName(i)); at.After(last) {
			last = at
		}
	}
	elapsed := last.Sub(start)
	if err != nil {
		return err
	}
	var list cmapi.CertificateRequestList
	if err := b.c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	var ready, failed int
	for _, cr := range list.Items {
		for _, c := range cr.Status.Conditions {
			if c.Type != cmapi.CertificateRequestConditionReady {
				continue
			}
			if c.Status == cmmeta.ConditionTrue {
				ready++
			} else if c.Reason == cmapi.CertificateRequestReasonFailed {
				failed++
			}
		}
	}
	cpu1, err := cpuOf(cpuProcs)
	if err != nil {
		return err
	}
	api1, err := op.apiRequests()
	if err != nil {
		return err
	}
	if profileDone != nil {
		<-profileDone
	}

	// What the server saw: every PKCSReq by transaction, every certificate
	// by subject.
	txns := map[string]int{}   // transactionID -> PKCSReq answered SUCCESS
	byCN := map[string]int{}   // subject CN -> certificates issued
	others := map[string]int{} // messageType -> count, besides PKCSReq
	for _, r := range srv.PKIRequests() {
		if r.MessageType != "PKCSReq" {
			others[r.MessageType]++
			continue
		}
		if r.Status == "SUCCESS" {
			txns[r.TransactionID]++
		}
	}
	for _, c := range srv.Issued() {
		byCN[c.Subject.CommonName]++
	}
	var lost, twice, txTwice, mismatched int
	for i := range o.burstN {
		switch byCN[burstName(i)] {
		case 0:
			lost++
		case 1:
		default:
			twice++
		}
	}
	for _, n := range txns {
		if n > 1 {
			txTwice++
		}
	}
	for _, cr := range list.Items {
		if id, _ := signer.TransactionIDOf(&cr); txns[string(id)] != 1 {
			mismatched++
		}
	}
	meter.mu.Lock()
	maxInFlight, allOps := meter.max, meter.all
	meter.mu.Unlock()

	pr := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	host, _ := os.Hostname()
	pr("scep-operator burst, %s on %s: %d CertificateRequests created at once for one SCEPProfile (Passthrough), maxConcurrentRequests %d, test/scepserver holding each PKIOperation %s", time.Now().UTC().Format("2006-01-02 15:04 UTC"), host, o.burstN, o.limit, o.delay)
	pr("load average at start: %s; at end: %s", loadStart, loadAverage())
	pr("")
	pr("| measure | value | expected |")
	pr("| --- | --- | --- |")
	pr("| submitted (creates returned) | %s | |", submitted.Round(time.Millisecond))
	pr("| elapsed, first create to last Ready | %s | |", elapsed.Round(time.Millisecond))
	pr("| requests Ready / failed | %d / %d | %d / 0 |", ready, failed, o.burstN)
	pr("| max PKIOperations in flight at the server | %d | ≤ %d |", maxInFlight, o.limit)
	pr("| PKIOperations at the server | %d | %d |", allOps, o.burstN)
	pr("| PKCSReq at the server | %d | %d |", srv.PKIMessages("PKCSReq"), o.burstN)
	pr("| other pkiMessages (CertPoll, ...) | %d | 0 |", len(others))
	pr("| distinct transactions answered SUCCESS | %d | %d |", len(txns), o.burstN)
	pr("| transactions answered SUCCESS more than once | %d | 0 |", txTwice)
	pr("| requests whose transaction-id is not one SUCCESS at the server | %d | 0 |", mismatched)
	pr("| CSRs (subjects) never issued / issued twice or more | %d / %d | 0 / 0 |", lost, twice)
	pr("| GetCACaps / GetCACert at the server | %d / %d | a few (profile checks) |", srv.Requests(scepserver.OpGetCACaps), srv.Requests(scepserver.OpGetCACert))
	pr("")
	pr("CPU seconds during the burst: operator %.1f (%.2f ms per request), cert-manager (approver only) %.1f, kube-apiserver %.1f, etcd %.1f, bench (SCEP server and load) %.1f",
		(cpu1["operator"] - cpu0["operator"]).Seconds(), float64((cpu1["operator"]-cpu0["operator"]).Microseconds())/1000/float64(o.burstN),
		(cpu1["cert-manager"] - cpu0["cert-manager"]).Seconds(), (cpu1["kube-apiserver"] - cpu0["kube-apiserver"]).Seconds(), (cpu1["etcd"] - cpu0["etcd"]).Seconds(), (cpu1["bench (SCEP server, load)"] - cpu0["bench (SCEP server, load)"]).Seconds())
	pr("The operator's API requests per CertificateRequest: %s", apiDelta(api0, api1, o.burstN))
	if ready != o.burstN || maxInFlight > o.limit || srv.PKIMessages("PKCSReq") != o.burstN || lost+twice+txTwice+mismatched > 0 {
		return fmt.Errorf("the burst broke a promise (see the table)")
	}
	return nil
}

func burstName(i int) string { return fmt.Sprintf("burst-%04d", i) }
