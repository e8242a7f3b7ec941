//go:build soak

package soak

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/test/freeport"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/ndes"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stack"
	"github.com/scep-operator/scep-operator/test/stepca"
)

var (
	duration = flag.Duration("soak.duration", 3*time.Minute, "how long Certificates are created, renewed and deleted while faults hit")
	seed     = flag.Uint64("soak.seed", 0, "random seed (0: from the time; the log prints it)")
	only     = flag.String("soak.faults", "", "comma-separated fault kinds to inject (kill-leader, kill-standby, apiserver, etcd, server-down, server-chaos, server-restart); empty: all")
	// population bounds what the operator caches, so that a long-lived
	// process's memory can only grow by leaking: with it, the generator
	// deletes instead of creating once that many Certificates exist, keeps
	// one CertificateRequest per Certificate (revisionHistoryLimit 1) and
	// deletes a deleted Certificate's requests as the garbage collector of
	// a cluster would (envtest runs none).
	population = flag.Int("soak.population", 0, "at most this many Certificates at once (0: no bound; the cluster grows for the whole run)")
	// heapDir keeps the leader's heap profiles, so that memory that grows
	// can be told by what holds it.
	heapDir   = flag.String("soak.heap-dir", "", "save the leading manager's heap profile (go tool pprof -sample_index=inuse_space) into this directory every soak.heap-every")
	heapEvery = flag.Duration("soak.heap-every", 15*time.Minute, "how often the leader's heap profile is saved (with soak.heap-dir)")
)

var namespaces = []string{"soak-a", "soak-b", "soak-c"}

func init() {
	// client-go's event broadcaster in cert-manager logs every Event it
	// cannot write while the API server is away: thousands of lines.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
}

// TestSoak runs the soak (see the package's documentation).
func TestSoak(t *testing.T) {
	ctx := t.Context()
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	h := &harness{t: t, rng: rand.New(rand.NewPCG(s, s>>1)), start: time.Now(), procCtx: ctx}
	h.logf("soak: %s, seed %d", *duration, s)
	h.up(ctx)

	runCtx, stopRun := context.WithTimeout(ctx, *duration)
	var wg sync.WaitGroup
	wg.Add(6)
	go func() { defer wg.Done(); h.supervise(runCtx) }()
	go func() { defer wg.Done(); h.approve(runCtx) }()
	go func() { defer wg.Done(); h.generate(runCtx) }()
	go func() { defer wg.Done(); h.inject(runCtx) }()
	go func() { defer wg.Done(); h.sample(runCtx) }()
	go func() { defer wg.Done(); h.profileHeap(runCtx) }()
	<-runCtx.Done()
	stopRun()
	wg.Wait()

	h.logf("soak: load and faults stopped; healing and waiting for every Certificate")
	h.heal(ctx)
	superviseCtx, stopSupervise := context.WithCancel(ctx)
	go h.supervise(superviseCtx)
	go h.approve(superviseCtx)
	defer stopSupervise()
	h.waitAllReady(ctx, 5*time.Minute)
	h.account(ctx)
}

// harness is the soak's world.
type harness struct {
	t     *testing.T
	rng   *rand.Rand
	rngMu sync.Mutex
	start time.Time

	// procCtx lives as long as the test: manager processes die with it.
	procCtx    context.Context
	st         *stack.Stack
	managerBin string
	servers    []*server
	// ndes is the server with CertPoll; some of its requests wait for a
	// CA manager's approval (approve).
	ndes *ndes.Server

	mu       sync.Mutex
	managers map[string]*managerSlot
	events   []string
	created  int
	renewed  int
	deleted  int
	faults   map[string]int
	faultLog []loggedFault
	samples  []sample
}

// server is one SCEP server behind its fault proxy.
type server struct {
	name  string
	proxy *FaultProxy
	// records is the server's own log of the pkiMessages it was sent and
	// what it answered, if it keeps one (it answers CertPoll).
	records *scepserver.Server
	// issued lists the keys of what the server's own records say it
	// issued; nil if it keeps none.
	issued func() []string
	// kill stops the server as a SIGKILL would; restart starts it again
	// with its data.
	kill    func()
	restart func() error
}

// managerSlot is one of the two operator replicas; the supervisor restarts
// it after it exits or after a kill, as a kubelet would.
type managerSlot struct {
	proc        *stack.ManagerProcess
	restartAt   time.Time
	starts      int
	metricsPort int
	// pprofPort serves /debug/pprof (0: not served; see soak.heap-dir).
	pprofPort int
	startedAt time.Time
	// backoff is the wait before restarting a process that exited by
	// itself, doubled at each quick exit (kubelet's CrashLoopBackOff).
	backoff time.Duration
}

func (h *harness) intn(n int) int {
	h.rngMu.Lock()
	defer h.rngMu.Unlock()
	return h.rng.IntN(n)
}

func (h *harness) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(h.intn(int(hi-lo)+1))
}

// logf prints and keeps a timestamped line.
func (h *harness) logf(format string, args ...any) {
	line := fmt.Sprintf("%7.1fs %s", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
	h.mu.Lock()
	h.events = append(h.events, line)
	h.mu.Unlock()
	h.t.Log(line)
}

// up starts the API server (with fixed directories, so it and etcd can be
// restarted), cert-manager, the servers, their profiles and two managers.
func (h *harness) up(ctx context.Context) {
	t := h.t
	dir := t.TempDir()
	for _, d := range []string{"apiserver", "etcd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	h.st, err = stack.Up(ctx, stack.Options{
		HelmValues: []string{"replicaCount=2"},
		NoOperator: true,
		Configure: func(env *ctrlenvtest.Environment) {
			env.ControlPlane.GetAPIServer().CertDir = filepath.Join(dir, "apiserver")
			if env.ControlPlane.Etcd == nil {
				env.ControlPlane.Etcd = &ctrlenvtest.Etcd{}
			}
			env.ControlPlane.Etcd.DataDir = filepath.Join(dir, "etcd")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.st.Down)
	if h.managerBin, err = h.st.BuildManager(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		if err := h.st.Env.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}

	// NDES answers CertPoll and keeps its transactions across restarts;
	// approve sends some of its requests through a CA manager's approval.
	// No one-time passwords: the profile needs no admin page credentials.
	nd := ndes.Start(t, ndes.Options{NoEnforcePassword: true, ManualApproval: true})
	h.ndes = nd
	// Quiet: MicroMDM logs every request.
	mdm, err := micromdm.New(t.TempDir(), micromdm.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mdm.Close)
	sca := stepca.Start(t, stepca.Options{IncludeRoot: true})
	stepTransport := http.DefaultTransport.(*http.Transport).Clone()
	stepTransport.TLSClientConfig = sca.HTTPClient().Transport.(*http.Transport).TLSClientConfig.Clone()
	for _, s := range []struct {
		server
		url       string
		transport http.RoundTripper
	}{
		{server{name: "ndes", records: nd.SCEP, issued: func() []string { return keysOf(nd.SCEP.Issued()) }, kill: nd.Kill, restart: nd.Restart}, nd.URL, nil},
		{server{name: "micromdm", issued: func() []string { return keysOf(mdm.Issued()) }, kill: mdm.Kill, restart: mdm.Restart}, mdm.URL, nil},
		{server{name: "stepca", kill: sca.Kill, restart: sca.Restart}, sca.URL, stepTransport},
	} {
		p, err := NewFaultProxy(s.url, s.transport)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		srv := s.server
		srv.proxy = p
		h.servers = append(h.servers, &srv)
		profile := &scepv1alpha1.ClusterSCEPProfile{
			ObjectMeta: metav1.ObjectMeta{Name: s.name},
			Spec: scepv1alpha1.SCEPProfileSpec{
				AllowAnySubject: true, AllowAnySubjectAltNames: true,
				URL:           p.URL,
				RetryInterval: &metav1.Duration{Duration: 2 * time.Second},
			},
		}
		if err := h.st.Client().Create(ctx, profile); err != nil {
			t.Fatal(err)
		}
	}
	h.managers = map[string]*managerSlot{"a": {}, "b": {}}
	h.faults = map[string]int{}
	for name := range h.managers {
		h.startManager(name)
	}
}

// fastLease: a standby takes over within seconds of the leader's death.
var fastLease = []string{
	"--leader-election-lease-duration=6s",
	"--leader-election-renew-deadline=4s",
	"--leader-election-retry-period=1s",
}

func (h *harness) startManager(name string) {
	port, err := freeport.Loopback()
	if err != nil {
		h.t.Errorf("starting manager %s: %v", name, err)
		return
	}
	// Plain-HTTP metrics on a loopback port of its own, for the samples.
	args := append(append([]string{}, fastLease...), fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port), "--metrics-secure=false")
	pprofPort := 0
	if *heapDir != "" {
		if pprofPort, err = freeport.Loopback(); err != nil {
			h.t.Errorf("starting manager %s: %v", name, err)
			return
		}
		args = append(args, fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", pprofPort))
	}
	p, err := h.st.StartManagerProcess(h.procCtx, h.managerBin, name, args...)
	if err != nil {
		h.t.Errorf("starting manager %s: %v", name, err)
		return
	}
	h.mu.Lock()
	slot := h.managers[name]
	slot.proc, slot.restartAt, slot.metricsPort, slot.pprofPort, slot.startedAt = p, time.Time{}, port, pprofPort, time.Now()
	slot.starts++
	h.mu.Unlock()
}

// supervise restarts a manager that exited (it loses its lease when the
// API server is away, and exits, as controller-runtime does) or was killed.
func (h *harness) supervise(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for name, slot := range h.snapshotManagers() {
			exited, err := slot.proc.Exited()
			if !exited {
				continue
			}
			if slot.restartAt.IsZero() {
				// It exited by itself (it loses its lease, and exits, when
				// the API server is away): back off as a kubelet does.
				backoff := slot.backoff
				if time.Since(slot.startedAt) > time.Minute || backoff == 0 {
					backoff = time.Second
				} else {
					backoff = min(2*backoff, 20*time.Second)
				}
				h.mu.Lock()
				h.managers[name].restartAt, h.managers[name].backoff = time.Now().Add(backoff), backoff
				h.mu.Unlock()
				h.logf("manager %s exited (%v); restarting it in %s", name, err, backoff)
				h.record("manager-exit", "", time.Now().Add(-time.Second), time.Now().Add(backoff))
			} else if time.Now().After(slot.restartAt) {
				h.logf("manager %s started again", name)
				h.startManager(name)
			}
		}
	}
}

func (h *harness) snapshotManagers() map[string]managerSlot {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]managerSlot{}
	for k, v := range h.managers {
		out[k] = *v
	}
	return out
}

// leader is the name of the manager that holds the lease now ("" if none).
func (h *harness) leader() string {
	for name, slot := range h.snapshotManagers() {
		if exited, _ := slot.proc.Exited(); !exited && strings.Contains(slot.proc.Logs(), "Successfully acquired lease") {
			return name
		}
	}
	return ""
}

// generate creates, renews and deletes Certificates at a steady rate.
func (h *harness) generate(ctx context.Context) {
	c := h.st.Client()
	tick := time.NewTicker(1500 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r := h.intn(10)
		h.mu.Lock()
		full := *population > 0 && h.created-h.deleted >= *population
		h.mu.Unlock()
		if full && r < 7 {
			r = 9 // delete instead
		}
		switch {
		case r < 7 || n < 10:
			srv := h.servers[h.intn(len(h.servers))]
			crt := &cmapi.Certificate{
				ObjectMeta: metav1.ObjectMeta{Namespace: namespaces[h.intn(len(namespaces))], Name: fmt.Sprintf("soak-%04d", n)},
				Spec: cmapi.CertificateSpec{
					SecretName: fmt.Sprintf("soak-%04d-tls", n),
					CommonName: fmt.Sprintf("soak-%04d.%s", n, srv.name),
					PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048, RotationPolicy: cmapi.RotationPolicyAlways},
					IssuerRef:  cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: "ClusterSCEPProfile", Name: srv.name},
				},
			}
			if *population > 0 {
				crt.Spec.RevisionHistoryLimit = ptr.To[int32](1)
			}
			if err := c.Create(actx, crt); err == nil {
				h.mu.Lock()
				h.created++
				h.mu.Unlock()
			}
		case r < 9:
			if crt := h.pickReady(actx); crt != nil {
				// What `cmctl renew` does: the Issuing condition, set by hand.
				crt.Status.Conditions = append(crt.Status.Conditions, cmapi.CertificateCondition{
					Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue,
					Reason: "ManuallyTriggered", Message: "soak: renew", LastTransitionTime: &metav1.Time{Time: time.Now()},
				})
				if err := c.Status().Update(actx, crt); err == nil {
					h.mu.Lock()
					h.renewed++
					h.mu.Unlock()
				}
			}
		default:
			if crt := h.pickReady(actx); crt != nil {
				if err := c.Delete(actx, crt); err == nil {
					h.mu.Lock()
					h.deleted++
					h.mu.Unlock()
					if *population > 0 {
						h.collectRequests(actx, crt)
					}
				}
			}
		}
		cancel()
	}
}

// collectRequests deletes the CertificateRequests crt owns, as a
// cluster's garbage collector would.
func (h *harness) collectRequests(ctx context.Context, crt *cmapi.Certificate) {
	c := h.st.Client()
	var list cmapi.CertificateRequestList
	if err := c.List(ctx, &list, client.InNamespace(crt.Namespace)); err != nil {
		return
	}
	for i := range list.Items {
		cr := &list.Items[i]
		if ref := metav1.GetControllerOfNoCopy(cr); ref != nil && ref.UID == crt.UID {
			_ = c.Delete(ctx, cr)
		}
	}
}

// pickReady returns a random Ready Certificate that is not being renewed.
func (h *harness) pickReady(ctx context.Context) *cmapi.Certificate {
	var list cmapi.CertificateList
	if err := h.st.Client().List(ctx, &list); err != nil {
		return nil
	}
	var ready []cmapi.Certificate
	for _, crt := range list.Items {
		if stack.IsReady(&crt) && !issuing(&crt) && crt.DeletionTimestamp == nil {
			ready = append(ready, crt)
		}
	}
	if len(ready) == 0 {
		return nil
	}
	return &ready[h.intn(len(ready))]
}

func issuing(crt *cmapi.Certificate) bool {
	for _, c := range crt.Status.Conditions {
		if c.Type == cmapi.CertificateConditionIssuing && c.Status == cmmeta.ConditionTrue {
			return true
		}
	}
	return false
}
