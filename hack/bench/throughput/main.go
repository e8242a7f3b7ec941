// Command throughput measures issuance throughput against the reference: on
// one real API server (envtest) with cert-manager's real controllers, it
// issues N Certificates (RSA 2048) through, in turn, cert-manager's own CA
// issuer, the ceiling for any external issuer (issuer-lib signing in memory),
// and scep-operator (cmd/manager) against MicroMDM in Passthrough and in
// Rebuild with a Static challenge. It reports throughput, creation-to-Ready
// latency, each process's CPU time, the ratios ours/CA and ours/ceiling, the
// operator's CPU per enrollment and the SCEP round trips per enrollment
// counted at the server.
//
// With -burst it instead submits a burst of CertificateRequests at once to
// one profile with maxConcurrentRequests and checks at a counting SCEP
// server that the limit held and every request was issued exactly once.
//
//	go run ./hack/bench/throughput [-n 500] [-issuers ca,ceiling,passthrough,rebuild]
//	go run ./hack/bench/throughput -burst [-burst-n 1000] [-limit 4] [-delay 20ms]
//
// Every party runs as its own process so /proc/<pid>/stat gives each one's
// CPU time: the operator (cmd/manager, built into the work directory),
// cert-manager's controllers, the SCEP server and the ceiling issuer are
// this program re-executed with a subcommand; kube-apiserver and etcd are
// envtest's. The bench process itself only creates objects and watches them.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	flowcontrolapi "k8s.io/api/flowcontrol/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"go.uber.org/zap/zapcore"

	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/freeport"
)

func main() {
	log.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	if len(os.Args) > 1 {
		if sub, ok := subcommands[os.Args[1]]; ok {
			ctx, cancel := signalContext()
			defer cancel()
			if err := sub(ctx, os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "throughput %s: %v\n", os.Args[1], err)
				os.Exit(1)
			}
			return
		}
	}
	var o options
	flag.IntVar(&o.n, "n", 500, "Certificates per issuer")
	flag.IntVar(&o.scale, "scale", 0, "after each operator issuer's N, issue this many more through the same profile (10000 for issue 16's scale goal) and account for them at the server")
	flag.IntVar(&o.warmup, "warmup", 10, "Certificates issued through each issuer before measuring (caches warm, SCEP caps cached)")
	flag.StringVar(&o.issuers, "issuers", "ca,ceiling,passthrough,rebuild", "issuers to measure, in order: ca, ceiling, passthrough, rebuild")
	flag.IntVar(&o.creators, "creators", 8, "concurrent Certificate creates")
	flag.StringVar(&o.pprofDir, "pprof-dir", "", "write CPU profiles of cert-manager and the operator during each measured run (at most 10 minutes of a long one) into this directory")
	flag.StringVar(&o.workDir, "work-dir", "", "kubeconfig, logs, binaries (default: a new temporary directory, removed unless -keep)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (process logs)")
	flag.StringVar(&o.manager, "manager", "", "run this operator binary instead of building cmd/manager (to compare two builds)")
	flag.BoolVar(&o.burst, "burst", false, "run the load-safety burst instead of the throughput comparison")
	flag.IntVar(&o.burstN, "burst-n", 1000, "with -burst: CertificateRequests submitted at once")
	flag.IntVar(&o.limit, "limit", 4, "with -burst: the profile's maxConcurrentRequests")
	flag.DurationVar(&o.delay, "delay", 20*time.Millisecond, "with -burst: how long the SCEP server holds each PKIOperation")
	flag.DurationVar(&o.ceilingDelay, "ceiling-delay", 0, "the ceiling holds each request this long before it signs, as an issuer with a network round trip does (a request stays in flight longer; cert-manager's work may depend on that)")
	flag.Parse()
	if o.ceilingDelay > 0 {
		issuerLabels["ceiling"] = fmt.Sprintf("ceiling (issuer-lib, signs in memory after %s)", o.ceilingDelay)
	}
	// client-go's own errors (watch ends at shutdown) are noise here.
	klog.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "throughput:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	n, warmup, creators int
	scale               int
	issuers, pprofDir   string
	workDir, manager    string
	keep                bool
	burst               bool
	burstN, limit       int
	delay               time.Duration
	ceilingDelay        time.Duration
}

// bench is the running API server, cert-manager and what the phases share.
type bench struct {
	opts       options
	root, work string
	self       string // this executable, re-executed for subcommands
	manager    string // cmd/manager, built
	env        *envtest.Env
	c          client.WithWatch
	kubeconfig string
	cm         *child
	// cmPprof is cert-manager's /debug/pprof address.
	cmPprof string
	// cmMetrics is the URL of cert-manager's metrics (reconciles by
	// controller).
	cmMetrics string
	apiserver int
	etcd      int
	// rsaCost is one RSA-2048 signature plus one decryption here.
	rsaCost time.Duration
}

func run(o options) (err error) {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	b := &bench{opts: o}
	if b.root, err = envtest.FindRepoRoot(wd); err != nil {
		return err
	}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if b.work = o.workDir; b.work == "" {
		if b.work, err = os.MkdirTemp("", "scep-bench-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(b.work)
		}
	} else if err := os.MkdirAll(b.work, 0o755); err != nil {
		return err
	}

	if b.manager = o.manager; b.manager == "" {
		progress("building cmd/manager")
		b.manager = filepath.Join(b.work, "manager")
		build := exec.Command("go", "build", "-o", b.manager, "./cmd/manager")
		build.Dir, build.Stdout, build.Stderr = b.root, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building cmd/manager: %w", err)
		}
	}

	progress("starting kube-apiserver and etcd (envtest)")
	cmCRDs, err := envtest.FindCertManagerCRDs()
	if err != nil {
		return err
	}
	if b.env, err = envtest.New(envtest.Options{Root: b.root, CRDPaths: []string{filepath.Join(b.root, "config", "crd", "bases"), cmCRDs}}); err != nil {
		return err
	}
	defer func() { _ = b.env.Environment.Stop() }()
	if _, err := ctrlenvtest.InstallCRDs(b.env.Config, ctrlenvtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{localIssuerCRD()}}); err != nil {
		return fmt.Errorf("installing the LocalIssuer CRD: %w", err)
	}
	if err := addLocalIssuer(b.env.Scheme); err != nil {
		return err
	}
	if b.c, err = client.NewWithWatch(b.env.Config, client.Options{Scheme: b.env.Scheme}); err != nil {
		return err
	}
	b.kubeconfig = filepath.Join(b.work, "kubeconfig")
	if err = envtest.WriteKubeconfig(b.env.Config, b.kubeconfig); err != nil {
		return err
	}
	pids := func(name string) (int, error) {
		p := childrenNamed(name)
		if len(p) != 1 {
			return 0, fmt.Errorf("found %d %s processes started by this one", len(p), name)
		}
		return p[0], nil
	}
	if b.apiserver, err = pids("kube-apiserver"); err != nil {
		return err
	}
	if b.etcd, err = pids("etcd"); err != nil {
		return err
	}
	ctx := context.Background()
	for _, ns := range []string{operatorNamespace} {
		if err := b.env.CreateNamespace(ctx, ns); err != nil {
			return err
		}
	}

	progress("starting cert-manager's controllers (own process)")
	cmArgs := []string{"certmanager", "-kubeconfig", b.kubeconfig}
	if o.burst {
		cmArgs = append(cmArgs, "-controllers", "certificaterequests-approver")
	}
	if b.cm, err = startChild(ctx, "cert-manager", b.work, b.self, cmArgs, nil, true); err != nil {
		return err
	}
	defer b.cm.stop()
	if len(b.cm.ready) != 2 {
		return fmt.Errorf("cert-manager printed READY %v, want its pprof address and metrics URL", b.cm.ready)
	}
	b.cmPprof, b.cmMetrics = b.cm.ready[0], b.cm.ready[1]

	if o.burst {
		return b.runBurst(ctx)
	}
	return b.runThroughput(ctx)
}

// operatorNamespace is the operator's cluster resource namespace.
const operatorNamespace = "scep-system"

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// operatorProc is the operator's process and its debug addresses.
type operatorProc struct {
	*child
	pprof   string // host:port of /debug/pprof
	metrics string // host:port of /metrics
}

// startOperator runs cmd/manager as its own process, with its defaults
// except for addresses (no probes; metrics and pprof on free ports).
func (b *bench) startOperator(ctx context.Context, name string) (*operatorProc, error) {
	var ports [2]int
	for i := range ports {
		p, err := freeport.Loopback()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	op := &operatorProc{pprof: fmt.Sprintf("127.0.0.1:%d", ports[0]), metrics: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	c, err := startChild(ctx, name, b.work, b.manager, []string{
		"--metrics-bind-address=" + op.metrics, "--metrics-secure=false", "--health-probe-bind-address=0",
		"--cluster-resource-namespace=" + operatorNamespace, "--pprof-bind-address=" + op.pprof,
	}, []string{"KUBECONFIG=" + b.kubeconfig}, false)
	op.child = c
	return op, err
}

// apiRequests reads the operator's client-go request counter
// (rest_client_requests_total) and sums it by HTTP method.
func (op *operatorProc) apiRequests() (map[string]int, error) {
	resp, err := http.Get("http://" + op.metrics + "/metrics") //nolint:gosec,noctx // the operator's loopback metrics
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, "rest_client_requests_total{") {
			continue
		}
		_, rest, _ := strings.Cut(l, `method="`)
		method, _, _ := strings.Cut(rest, `"`)
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return nil, err
		}
		out[method] += int(v)
	}
	return out, nil
}

// apiDelta is after minus before, as "GET 500, PATCH 1000, ...".
func apiDelta(before, after map[string]int, per int) string {
	var parts []string
	for _, m := range []string{"GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "DELETE"} {
		if d := after[m] - before[m]; d != 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f", m, float64(d)/float64(per)))
		}
	}
	return strings.Join(parts, ", ")
}

// apfEnabled asks the API server whether API Priority and Fairness is on,
// the way cert-manager decides whether its QPS/Burst apply: a response
// carrying the matched FlowSchema header.
func apfEnabled(cfg *rest.Config) (bool, error) {
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequest(http.MethodHead, strings.TrimSuffix(cfg.Host, "/")+"/livez/ping", nil)
	if err != nil {
		return false, err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return false, err
	}
	_ = resp.Body.Close()
	return resp.Header.Get(flowcontrolapi.ResponseHeaderMatchedFlowSchemaUID) != "", nil
}

// rateLimits says which client-side limits applied, for the report.
func (b *bench) rateLimits() string {
	apf, err := apfEnabled(b.env.Config)
	if err != nil {
		return fmt.Sprintf("could not tell whether API Priority and Fairness is on: %v", err)
	}
	if apf {
		return "API Priority and Fairness is on (X-Kubernetes-PF-FlowSchema-UID present), so cert-manager ignored its QPS 20/Burst 50 and ran without a client-side limit (QPS -1); the operator and the ceiling run with controller-runtime's QPS -1 too"
	}
	return "API Priority and Fairness is off, so cert-manager's QPS 20/Burst 50 applied; the operator and the ceiling run with controller-runtime's QPS -1 (no client-side limit)"
}
