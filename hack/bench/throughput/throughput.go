package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/test/certmanager"
)

// issuerSetup is one issuer under test, ready to issue.
type issuerSetup struct {
	ref cmmeta.IssuerReference
	// procs are the issuer's own processes by role (operator, scep-server,
	// ceiling), stopped after its run.
	procs map[string]*child
	// stats reads the SCEP server's counters; nil for the other issuers.
	stats func() (scepStats, error)
	// pprof is the operator's pprof address, if any.
	pprof string
	// operator is the operator's process, if any.
	operator *operatorProc
	// depot reads what the SCEP server's depot holds; nil for the other
	// issuers.
	depot func() (depotStats, error)
}

// issuerProcess is the operator's or the ceiling's process; nil for
// cert-manager's CA issuer, which runs inside cert-manager.
func (s *issuerSetup) issuerProcess() *child {
	if s.operator != nil {
		return s.operator.child
	}
	return s.procs["ceiling"]
}

// result is one issuer's measured run.
type result struct {
	name, label    string
	n              int
	elapsed        time.Duration
	latencies      []time.Duration
	cpu            map[string]time.Duration
	machineBusy    time.Duration
	machineElapsed time.Duration
	scep           *scepStats // counters during the measured run
	api            string     // the operator's API requests per enrollment, by method
	requests       int        // CertificateRequests cert-manager made for the measured Certificates
	warnings       string     // Warning Events in the namespace, by reason, with an example
	rss            rssStats   // the operator's resident memory during the run
	// syncs are cert-manager's reconciles during the run, by controller.
	syncs map[string]int
	// requestLatencies are the issuer's own times, from each request's
	// creation to its Ready condition (whole seconds, as the API keeps them).
	requestLatencies []time.Duration
	// scaled is the scale run that followed this one (-scale), with the
	// server's depot and every CertificateRequest of the namespace.
	scaled      *result
	depot       depotStats
	allRequests int
}

// requestLatencies lists the batch's CertificateRequests (named
// prefix-...-revision) and gives each Ready one's time from creation to its
// Ready condition: how long a request waits on the issuer, while
// create→Ready of a Certificate also holds cert-manager's own queue.
func requestLatencies(ctx context.Context, c client.Client, ns, prefix string) []time.Duration {
	var list cmapi.CertificateRequestList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		progress("listing CertificateRequests: %v", err)
		return nil
	}
	var out []time.Duration
	for _, cr := range list.Items {
		if !strings.HasPrefix(cr.Name, prefix+"-") {
			continue
		}
		for _, c := range cr.Status.Conditions {
			if c.Type == cmapi.CertificateRequestConditionReady && c.Status == cmmeta.ConditionTrue && c.LastTransitionTime != nil {
				out = append(out, c.LastTransitionTime.Sub(cr.CreationTimestamp.Time))
			}
		}
	}
	return out
}

// warningEvents sums the Warning Events of a namespace by reason, with the
// first note of each, so a retried enrollment shows up in the report.
func warningEvents(ctx context.Context, c client.Client, ns string) string {
	var list eventsv1.EventList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	count, example := map[string]int{}, map[string]string{}
	for _, e := range list.Items {
		if e.Type != corev1.EventTypeWarning {
			continue
		}
		n := 1
		if e.Series != nil {
			n = int(e.Series.Count)
		}
		count[e.Reason] += n
		if example[e.Reason] == "" {
			example[e.Reason] = e.Regarding.Name + ": " + e.Note
		}
	}
	var out []string
	for r, n := range count {
		out = append(out, fmt.Sprintf("%s ×%d (e.g. %s)", r, n, example[r]))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

func (r result) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

// cpuPerCert is the CPU time of every process of the stack (issuer, SCEP
// server, cert-manager, API server, etcd, bench) per certificate: what the
// run costs, whatever else the machine was doing.
func (r result) cpuPerCert() time.Duration {
	var sum time.Duration
	for _, d := range r.cpu {
		sum += d
	}
	return sum / time.Duration(r.n)
}

func (r result) percentile(p float64) time.Duration {
	return percentile(r.latencies, p)
}

func percentile(latencies []time.Duration, p float64) time.Duration {
	if len(latencies) == 0 {
		return 0
	}
	l := slices.Clone(latencies)
	slices.Sort(l)
	i := int(p*float64(len(l))+0.5) - 1
	return l[max(0, min(i, len(l)-1))]
}

var issuerLabels = map[string]string{
	"ca":          "cert-manager CA issuer",
	"ceiling":     "ceiling (issuer-lib, signs in memory)",
	"passthrough": "scep-operator Passthrough (MicroMDM)",
	"rebuild":     "scep-operator Rebuild, Static challenge (MicroMDM)",
}

func (b *bench) runThroughput(ctx context.Context) error {
	names := strings.Split(b.opts.issuers, ",")
	for _, n := range names {
		if issuerLabels[n] == "" {
			return fmt.Errorf("unknown issuer %q (want ca, ceiling, passthrough, rebuild)", n)
		}
	}
	loadStart := loadAverage()
	var err error
	if b.rsaCost, err = rsaCost(200); err != nil {
		return err
	}
	start := time.Now()
	var results []result
	for _, name := range names {
		r, err := b.measure(ctx, name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		results = append(results, r)
		progress("  %s: %d in %s, %.1f/s", name, r.n, r.elapsed.Round(time.Millisecond), r.rate())
		if r.scaled != nil {
			progress("  %s: then %d in %s, %.1f/s", name, r.scaled.n, r.scaled.elapsed.Round(time.Millisecond), r.scaled.rate())
		}
	}
	b.report(os.Stdout, results, loadStart, loadAverage(), time.Since(start))
	return nil
}

// setup creates the issuer's objects and processes in namespace ns.
func (b *bench) setup(ctx context.Context, name, ns string) (*issuerSetup, error) {
	s := &issuerSetup{procs: map[string]*child{}}
	switch name {
	case "ca":
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		ca, err := selfSignedCA(key, "bench CA issuer CA")
		if err != nil {
			return nil, err
		}
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca-key-pair"}, Type: corev1.SecretTypeTLS, Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		}}
		iss := &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"}, Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: sec.Name}}}}
		if err := createAll(ctx, b.c, sec, iss); err != nil {
			return nil, err
		}
		s.ref = cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "Issuer", Name: iss.Name}
		return s, waitFor(ctx, time.Minute, "the CA Issuer to be Ready", func() (bool, error) {
			if err := b.c.Get(ctx, client.ObjectKeyFromObject(iss), iss); err != nil {
				return false, err
			}
			for _, c := range iss.Status.Conditions {
				if c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
	case "ceiling":
		c, err := startChild(ctx, "ceiling", b.work, b.self, []string{"ceiling", "-kubeconfig", b.kubeconfig, "-delay", b.opts.ceilingDelay.String()}, nil, true)
		if err != nil {
			return nil, err
		}
		s.procs["ceiling"] = c
		iss := &LocalIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "local"}}
		if err := b.c.Create(ctx, iss); err != nil {
			return s, err
		}
		s.ref = cmmeta.IssuerReference{Group: localIssuerGroup.Group, Kind: "LocalIssuer", Name: iss.Name}
		return s, waitFor(ctx, time.Minute, "the LocalIssuer to be Ready", func() (bool, error) {
			if err := b.c.Get(ctx, client.ObjectKeyFromObject(iss), iss); err != nil {
				return false, err
			}
			return meta.IsStatusConditionTrue(iss.Status.Conditions, "Ready"), nil
		})
	}

	// The operator, against MicroMDM.
	rebuild := name == "rebuild"
	dir := filepath.Join(b.work, "depot-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	args := []string{"scep-server", "-dir", dir}
	if rebuild {
		args = append(args, "-challenge", benchChallenge)
	}
	srv, err := startChild(ctx, "scep-server-"+name, b.work, b.self, args, nil, true)
	if err != nil {
		return nil, err
	}
	s.procs["scep-server"] = srv
	if len(srv.ready) != 2 {
		return s, fmt.Errorf("the SCEP server said %q, want its URL and stats URL", srv.ready)
	}
	url, statsURL := srv.ready[0], srv.ready[1]
	s.stats = func() (scepStats, error) { return fetchJSON[scepStats](statsURL) }
	s.depot = func() (depotStats, error) {
		return fetchJSON[depotStats](strings.TrimSuffix(statsURL, "/stats") + "/depot")
	}
	op, err := b.startOperator(ctx, "operator-"+name)
	if err != nil {
		return s, err
	}
	s.procs["operator"], s.pprof, s.operator = op.child, op.pprof, op
	p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "micromdm"}, Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: url}}
	if rebuild {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "challenge"}, StringData: map[string]string{"password": benchChallenge}}
		if err := b.c.Create(ctx, sec); err != nil {
			return s, err
		}
		p.Spec.CSRMode = scepv1alpha1.CSRModeRebuild
		p.Spec.Challenge = scepv1alpha1.Challenge{AllowUnpinnedHTTP: true, Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: sec.Name, Key: "password"}}
	}
	if err := b.c.Create(ctx, p); err != nil {
		return s, err
	}
	s.ref = cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: "SCEPProfile", Name: p.Name}
	return s, waitFor(ctx, 2*time.Minute, "the SCEPProfile to be Ready", func() (bool, error) {
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(p.Status.Conditions, "Ready"), nil
	})
}

// benchChallenge is the Static challenge of the Rebuild run.
const benchChallenge = "bench-challenge"

// fetchJSON reads a JSON document from the bench's own loopback server.
func fetchJSON[T any](url string) (T, error) {
	var v T
	resp, err := http.Get(url) //nolint:gosec,noctx // the bench's own loopback server
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

func createAll(ctx context.Context, c client.Client, objs ...client.Object) error {
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// waitFor polls cond every 100 ms.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %s waiting for %s (last error: %v)", timeout, what, last)
}

// measure issues warm-up Certificates, then N measured ones, through one
// issuer in its own namespace, and cleans up after.
func (b *bench) measure(ctx context.Context, name string) (result, error) {
	ns := "bench-" + name
	if err := b.env.CreateNamespace(ctx, ns); err != nil {
		return result{}, err
	}
	progress("%s: setting up %s", name, issuerLabels[name])
	s, err := b.setup(ctx, name, ns)
	defer func() {
		if s != nil {
			for _, p := range s.procs {
				p.stop()
			}
		}
	}()
	if err != nil {
		return result{}, err
	}
	w := watchCertificates(ctx, b.c, ns)
	defer w.stop()

	if b.opts.warmup > 0 {
		progress("%s: %d warm-up Certificates", name, b.opts.warmup)
		if _, _, err := b.issue(ctx, w, ns, "warm", b.opts.warmup, s.ref); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}

	crs := watchDone(ctx, b.c, ns, func() client.ObjectList { return &cmapi.CertificateRequestList{} }, func(client.Object) bool { return true })
	defer crs.stop()
	r, err := b.measureBatch(ctx, s, w, crs, ns, name, "crt", b.opts.n, true)
	if err != nil {
		return result{}, err
	}
	r.warnings = warningEvents(ctx, b.c, ns)
	if b.opts.scale > 0 {
		// The same issuer (and profile and server) goes on with scale
		// times more, the first batch left in place as a cluster keeps it.
		big, err := b.measureBatch(ctx, s, w, crs, ns, name, "big", b.opts.scale, true)
		if err != nil {
			return result{}, fmt.Errorf("scale run: %w", err)
		}
		big.warnings = warningEvents(ctx, b.c, ns)
		if s.depot != nil {
			if big.depot, err = s.depot(); err != nil {
				return result{}, err
			}
		}
		big.allRequests = crs.total()
		r.scaled = &big
	}
	b.cleanup(ctx, ns)
	return r, nil
}

// measureBatch issues n Certificates named prefix-i and measures the run:
// every process's CPU, the SCEP server's counters, the operator's API
// requests and its memory; with -pprof-dir, cert-manager's CPU profile, and
// the operator's too if profile.
func (b *bench) measureBatch(ctx context.Context, s *issuerSetup, w, crs *certWatch, ns, name, prefix string, n int, profile bool) (result, error) {
	procs := map[string]int{"kube-apiserver": b.apiserver, "etcd": b.etcd, "cert-manager": b.cm.pid(), "bench": os.Getpid()}
	for role, p := range s.procs {
		procs[role] = p.pid()
	}
	cpu0, err := cpuOf(procs)
	if err != nil {
		return result{}, err
	}
	var scep0 scepStats
	if s.stats != nil {
		if scep0, err = s.stats(); err != nil {
			return result{}, err
		}
	}
	var api0 map[string]int
	if s.operator != nil {
		if api0, err = s.operator.apiRequests(); err != nil {
			return result{}, err
		}
	}
	syncs0, err := certmanager.SyncCalls(ctx, b.cmMetrics)
	if err != nil {
		return result{}, err
	}
	var rss *rssSampler
	if iss := s.issuerProcess(); iss != nil {
		rss = sampleRSS(ctx, iss.pid())
	}
	busy0, total0 := machineCPU()
	// Long enough for the run at 8 certificates a second (a longer profile
	// only adds idle time), and at most 10 minutes of a long one.
	secs := min(max(10, n/8), 600)
	label := name
	if prefix != "crt" {
		label += "-" + prefix
	}
	profilesDone := []chan struct{}{b.startProfile("cert-manager", label, b.cmPprof, secs)}
	if profile {
		profilesDone = append(profilesDone, b.startProfile("operator", label, s.pprof, secs))
	}

	progress("%s: %d Certificates", name, n)
	r := result{name: name, label: issuerLabels[name], n: n}
	t0 := time.Now()
	var last time.Time
	if r.latencies, last, err = b.issue(ctx, w, ns, prefix, n, s.ref); err != nil {
		return result{}, err
	}
	r.elapsed = last.Sub(t0)

	cpu1, err := cpuOf(procs)
	if err != nil {
		return result{}, err
	}
	busy1, total1 := machineCPU()
	if rss != nil {
		r.rss = rss.stop()
	}
	r.machineBusy, r.machineElapsed = busy1-busy0, total1-total0
	r.cpu = map[string]time.Duration{}
	for k := range cpu1 {
		r.cpu[k] = cpu1[k] - cpu0[k]
	}
	var api1 map[string]int
	if s.operator != nil {
		if api1, err = s.operator.apiRequests(); err != nil {
			return result{}, err
		}
	}
	syncs1, err := certmanager.SyncCalls(ctx, b.cmMetrics)
	if err != nil {
		return result{}, err
	}
	r.syncs = syncDelta(syncs0, syncs1)
	if s.stats != nil {
		scep1, err := s.stats()
		if err != nil {
			return result{}, err
		}
		d := scepStats{Requests: map[string]int{}, Messages: map[string]int{}}
		for k, v := range scep1.Requests {
			d.Requests[k] = v - scep0.Requests[k]
		}
		for k, v := range scep1.Messages {
			d.Messages[k] = v - scep0.Messages[k]
		}
		r.scep = &d
	}
	for _, done := range profilesDone {
		if done != nil {
			<-done
		}
	}
	// cert-manager may make two CertificateRequests for one Certificate (a
	// second revision, the first deleted); round trips are per request.
	r.requests = crs.count(prefix)
	r.requestLatencies = requestLatencies(ctx, b.c, ns, prefix)
	if api1 != nil {
		r.api = apiDelta(api0, api1, r.requests)
	}
	return r, nil
}

func cpuOf(procs map[string]int) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for k, pid := range procs {
		d, err := processCPU(pid)
		if err != nil {
			return nil, fmt.Errorf("CPU time of %s: %w", k, err)
		}
		out[k] = d
	}
	return out, nil
}

// cleanup deletes what a run created, so the next issuer starts from the
// same number of objects. Nothing garbage-collects on envtest, so Secrets
// are deleted by hand.
func (b *bench) cleanup(ctx context.Context, ns string) {
	for _, o := range []client.Object{&cmapi.Certificate{}, &cmapi.CertificateRequest{}, &corev1.Secret{}} {
		if err := b.c.DeleteAllOf(ctx, o, client.InNamespace(ns)); err != nil {
			progress("cleanup of %s: %v", ns, err)
		}
	}
	time.Sleep(3 * time.Second) // let the controllers see the deletions before the next run
}

// issue creates n Certificates named prefix-i at once and waits until each
// is Ready, returning each one's time from its create call to its Ready
// condition seen by the watch, and when the last was seen Ready.
func (b *bench) issue(ctx context.Context, w *certWatch, ns, prefix string, n int, ref cmmeta.IssuerReference) ([]time.Duration, time.Time, error) {
	created := make([]time.Time, n)
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range b.opts.creators {
		wg.Go(func() {
			for i := range work {
				name := fmt.Sprintf("%s-%04d", prefix, i)
				crt := &cmapi.Certificate{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
					Spec: cmapi.CertificateSpec{
						SecretName: name + "-tls",
						CommonName: name + ".bench.example",
						DNSNames:   []string{name + ".bench.example"},
						PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048},
						Usages:     []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment},
						IssuerRef:  ref,
					},
				}
				created[i] = time.Now()
				if err := b.c.Create(ctx, crt); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, time.Time{}, err
	default:
	}
	timeout := time.Duration(n)*time.Second + 2*time.Minute
	if err := waitFor(ctx, timeout, fmt.Sprintf("%d Certificates to be Ready", n), func() (bool, error) {
		got := w.count(prefix)
		return got == n, fmt.Errorf("%d of %d Ready", got, n)
	}); err != nil {
		return nil, time.Time{}, err
	}
	lat := make([]time.Duration, n)
	var last time.Time
	for i := range n {
		at := w.readyAt(fmt.Sprintf("%s-%04d", prefix, i))
		lat[i] = at.Sub(created[i])
		if at.After(last) {
			last = at
		}
	}
	return lat, last, nil
}

// certWatch records when each object of a namespace (Certificates, or
// CertificateRequests in the burst) was first seen done.
type certWatch struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	ready  map[string]time.Time
}

func watchCertificates(ctx context.Context, c client.WithWatch, ns string) *certWatch {
	return watchDone(ctx, c, ns, func() client.ObjectList { return &cmapi.CertificateList{} }, func(o client.Object) bool {
		crt, ok := o.(*cmapi.Certificate)
		if !ok {
			return false
		}
		for _, cond := range crt.Status.Conditions {
			if cond.Type == cmapi.CertificateConditionReady && cond.Status == cmmeta.ConditionTrue {
				return true
			}
		}
		return false
	})
}

// watchDone lists and watches a namespace (so the bench does not poll the
// API server with lists) and records when done first held for each object.
func watchDone(ctx context.Context, c client.WithWatch, ns string, newList func() client.ObjectList, done func(client.Object) bool) *certWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &certWatch{cancel: cancel, ready: map[string]time.Time{}}
	see := func(o client.Object) {
		if !done(o) {
			return
		}
		w.mu.Lock()
		if _, ok := w.ready[o.GetName()]; !ok {
			w.ready[o.GetName()] = time.Now()
		}
		w.mu.Unlock()
	}
	go func() {
		for ctx.Err() == nil {
			list := newList()
			if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			_ = meta.EachListItem(list, func(o runtime.Object) error {
				if co, ok := o.(client.Object); ok {
					see(co)
				}
				return nil
			})
			wi, err := c.Watch(ctx, newList(), client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.GetResourceVersion()}})
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for ev := range wi.ResultChan() {
				if ev.Type == watch.Error {
					break
				}
				if co, ok := ev.Object.(client.Object); ok {
					see(co)
				}
			}
			wi.Stop()
		}
	}()
	return w
}

func (w *certWatch) stop() { w.cancel() }

func (w *certWatch) count(prefix string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for k := range w.ready {
		if strings.HasPrefix(k, prefix+"-") {
			n++
		}
	}
	return n
}

// total counts every object seen done.
func (w *certWatch) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ready)
}

func (w *certWatch) readyAt(name string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ready[name]
}

// report prints the tables docs/performance.md keeps.
func (b *bench) report(out io.Writer, results []result, loadStart, loadEnd string, total time.Duration) {
	p := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	byName := map[string]result{}
	for _, r := range results {
		byName[r.name] = r
	}
	host, _ := os.Hostname()
	p("scep-operator throughput bench, %s on %s (%d Certificates per issuer, RSA 2048, 2048-bit CAs; %d warm-up each)", time.Now().UTC().Format("2006-01-02 15:04 UTC"), host, b.opts.n, b.opts.warmup)
	p("load average at start: %s; at end: %s; whole run %s", loadStart, loadEnd, total.Round(time.Second))
	p("client-side rate limits: %s", b.rateLimits())
	p("")
	p("| issuer | certificates/s | elapsed | p50 create→Ready | p95 | ours/CA issuer | ours/ceiling | stack CPU per certificate | by CPU: ours/CA issuer | by CPU: ours/ceiling |")
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		ratio := func(ref string, cpu bool) string {
			o, ok := byName[ref]
			if !ok || !strings.HasPrefix(r.label, "scep-operator") {
				return "–"
			}
			if cpu {
				return fmt.Sprintf("%.2f", o.cpuPerCert().Seconds()/r.cpuPerCert().Seconds())
			}
			return fmt.Sprintf("%.2f", r.rate()/o.rate())
		}
		p("| %s | %.1f | %s | %s | %s | %s | %s | %d ms | %s | %s |", r.label, r.rate(), r.elapsed.Round(10*time.Millisecond), r.percentile(0.5).Round(time.Millisecond), r.percentile(0.95).Round(time.Millisecond),
			ratio("ca", false), ratio("ceiling", false), r.cpuPerCert().Milliseconds(), ratio("ca", true), ratio("ceiling", true))
	}
	p("")
	p("CPU seconds during each measured run (utime+stime from /proc/<pid>/stat); \"issuer\" is the operator or the ceiling process; the bench process only creates and watches Certificates:")
	p("")
	p("| issuer | issuer process | SCEP server | cert-manager | kube-apiserver | etcd | bench | whole machine | machine CPU per certificate |")
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	sec := func(d time.Duration, ok bool) string {
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.1f", d.Seconds())
	}
	for _, r := range results {
		iss, ok := r.cpu["operator"]
		if !ok {
			iss, ok = r.cpu["ceiling"]
		}
		scepCPU, sok := r.cpu["scep-server"]
		p("| %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f of %.1f | %d ms |", r.label, sec(iss, ok), sec(scepCPU, sok), r.cpu["cert-manager"].Seconds(), r.cpu["kube-apiserver"].Seconds(), r.cpu["etcd"].Seconds(), r.cpu["bench"].Seconds(), r.machineBusy.Seconds(), r.machineElapsed.Seconds(), (r.machineBusy / time.Duration(r.n)).Milliseconds())
	}
	for _, r := range results {
		if r.warnings != "" {
			p("")
			p("Warning Events during the %s run: %s", r.label, r.warnings)
		}
	}
	reportReconciles(p, results)
	b.reportScale(p, results)
	var ours []result
	for _, r := range results {
		if r.scep != nil {
			ours = append(ours, r)
		}
	}
	if len(ours) == 0 {
		return
	}
	p("")
	p("One RSA-2048 signature plus one decryption take %.2f ms here (median of 200, measured by the bench before the runs).", float64(b.rsaCost.Microseconds())/1000)
	if c, ok := byName["ceiling"]; ok {
		ceil := float64(c.cpu["ceiling"].Microseconds()) / 1000 / float64(c.n)
		p("Ceiling process: %.2f ms per certificate; goal 2 allows the operator %.2f ms per enrollment (ceiling + that).", ceil, ceil+float64(b.rsaCost.Microseconds())/1000)
	}
	p("")
	p("| operator run | CertificateRequests | operator CPU per enrollment | SCEP HTTP requests per enrollment (at the server) | PKCSReq | GetCACaps | GetCACert | operator's API requests per enrollment |")
	p("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range ours {
		p("| %s | %d | %.2f ms | %.3f | %d | %d | %d | %s |", r.label, r.requests, float64(r.cpu["operator"].Microseconds())/1000/float64(r.requests), float64(r.scep.httpTotal())/float64(r.requests), r.scep.Messages["PKCSReq"], r.scep.Requests["GetCACaps"], r.scep.Requests["GetCACert"], r.api)
	}
}

// reportScale prints the -scale runs: each issuer's rate against its
// first N, its own CPU and cert-manager's per certificate (which says whose
// cost grew), its memory, and for the operator the server's depot against
// the cluster.
func (b *bench) reportScale(p func(string, ...any), results []result) {
	var scaled bool
	for _, r := range results {
		scaled = scaled || r.scaled != nil
	}
	if !scaled {
		return
	}
	p("")
	p("Scale: after the first %d, the same issuer (profile, server) issues %d more, the first left in place:", b.opts.n, b.opts.scale)
	p("")
	p("| issuer | Certificates | certificates/s | rate against the first %d | p50 create→Ready | p95 | request's p50 create→Ready | p95 | issuer CPU per certificate | cert-manager CPU per certificate | issuer RSS | PKCSReq at the server | API requests per enrollment |", b.opts.n)
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		if r.scaled == nil {
			continue
		}
		for _, x := range []result{r, *r.scaled} {
			iss, ok := x.cpu["operator"]
			if !ok {
				iss = x.cpu["ceiling"]
			}
			perCert := func(d time.Duration) string {
				return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000/float64(x.n))
			}
			pkcsReq, api := "–", "–"
			if x.scep != nil {
				pkcsReq, api = fmt.Sprint(x.scep.Messages["PKCSReq"]), x.api
			}
			p("| %s | %d | %.2f | %.3f | %s | %s | %s | %s | %s | %s | %s | %s | %s |", x.label, x.n, x.rate(), x.rate()/r.rate(), x.percentile(0.5).Round(time.Millisecond), x.percentile(0.95).Round(time.Millisecond),
				percentile(x.requestLatencies, 0.5), percentile(x.requestLatencies, 0.95), perCert(iss), perCert(x.cpu["cert-manager"]), x.rss, pkcsReq, api)
		}
		if r.scep != nil {
			d := r.scaled.depot
			p("")
			p("%s, whole namespace at the end: %d CertificateRequests; the server's depot holds %d certificates for %d keys, %d keys issued more than once.", r.label, r.scaled.allRequests, d.Certificates, d.Keys, d.KeysIssuedTwice)
		}
		if r.scaled.warnings != "" {
			p("Warning Events in the %s namespace: %s", r.label, r.scaled.warnings)
		}
	}
	// Where the CPU went, every process, so that a rate lost at scale can be
	// put on the process whose cost grew.
	p("")
	p("CPU per certificate by process, and how busy the machine was (1 = every core):")
	p("")
	p("| issuer | Certificates | issuer | SCEP server | cert-manager | kube-apiserver | etcd | bench | machine busy |")
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		if r.scaled == nil {
			continue
		}
		for _, x := range []result{r, *r.scaled} {
			perCert := func(process ...string) string {
				for _, proc := range process {
					if d, ok := x.cpu[proc]; ok {
						return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000/float64(x.n))
					}
				}
				return "–"
			}
			busy := "–"
			if x.machineElapsed > 0 {
				busy = fmt.Sprintf("%.2f", x.machineBusy.Seconds()/x.machineElapsed.Seconds())
			}
			p("| %s | %d | %s | %s | %s | %s | %s | %s | %s |", x.label, x.n, perCert("operator", "ceiling"), perCert("scep-server"),
				perCert("cert-manager"), perCert("kube-apiserver"), perCert("etcd"), perCert("bench"), busy)
		}
	}
}
