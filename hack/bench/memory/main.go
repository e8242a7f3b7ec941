// Command memory measures the operator's memory with many CertificateRequests
// for another issuer in the cluster: it starts a real API server, creates N
// requests (each with a 2048-bit CSR, as cert-manager makes them) for
// cert-manager's own CA issuer, then runs the operator's manager in this
// process until its caches are synced, and reports heap and RSS growth.
// With -process (the default) it also runs cmd/manager as a process of its
// own, before and after creating the requests, and reports that process's
// resident memory: the figure a cluster admin sees for the operator's pod.
// With -own M it also creates M requests of the operator's own, finished
// (approved, Ready, with a certificate and CA as an issued request has):
// what a cluster's issued history costs the operator's cache.
//
//	go run ./hack/bench/memory [-n 10000] [-own 0] [-transform=true] [-process=true]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"go.uber.org/zap/zapcore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/freeport"
	"github.com/scep-operator/scep-operator/test/pprofsave"
	"github.com/scep-operator/scep-operator/test/procstatus"
)

func main() {
	n := flag.Int("n", 10000, "CertificateRequests for another issuer")
	flag.IntVar(&own, "own", 0, "finished CertificateRequests of the operator's own issuers")
	transform := flag.Bool("transform", true, "use the operator's cache transform (false: cache full objects, for comparison)")
	process := flag.Bool("process", true, "also measure cmd/manager as a process of its own")
	flag.StringVar(&heapProfileDir, "heap-profile-dir", "", "write the manager process's heap profile (after a GC) at each measurement into this directory")
	flag.Parse()
	log.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	if err := run(*n, *transform, *process); err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
		os.Exit(1)
	}
}

// own is how many finished requests of the operator's own to create.
var own int

// heapProfileDir, when set, receives heap-<label>.pb.gz of the manager
// process at each measurement (go tool pprof -sample_index=inuse_space).
var heapProfileDir string

// managerProcess runs the built cmd/manager against the API server until
// its CertificateRequest controller has synced its cache and started, lets
// it run settle long, and returns its resident memory then and its peak.
func managerProcess(ctx context.Context, bin, kubeconfig, label string, settle time.Duration) (rssKiB, peakKiB int, err error) {
	var out syncBuffer
	args := []string{"--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--cluster-resource-namespace=load", "--profile-check-interval=1h", "--zap-log-level=info"}
	pprofAddr := ""
	if heapProfileDir != "" {
		if pprofAddr, err = freeport.LoopbackAddress(); err != nil {
			return 0, 0, err
		}
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	pid := cmd.Process.Pid
	// controller-runtime logs "Starting workers" once the cache has synced.
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(out.String(), `"Starting workers","controller":"certificaterequest"`) {
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("the manager did not start its workers in 5 minutes:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(settle) // a measurement, not a test: give the first reconciles time to finish
	rssKiB, peakKiB = procstatus.RSS(pid), procstatus.PeakRSS(pid)
	if pprofAddr != "" {
		if err := pprofsave.Heap(ctx, pprofAddr, filepath.Join(heapProfileDir, "heap-"+label+".pb.gz")); err != nil {
			return 0, 0, err
		}
	}
	return rssKiB, peakKiB, nil
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func heapMiB() float64 {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

func run(n int, transform, process bool) error {
	env, err := envtest.New(envtest.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = env.Environment.Stop() }()
	ctx := context.Background()
	if err := env.CreateNamespace(ctx, "load"); err != nil {
		return err
	}
	var bin, kubeconfig string
	var emptyRSS, emptyPeak int
	if process {
		dir, err := os.MkdirTemp("", "scep-operator-memory-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		wd, _ := os.Getwd()
		root, err := envtest.FindRepoRoot(wd)
		if err != nil {
			return err
		}
		bin, kubeconfig = filepath.Join(dir, "manager"), filepath.Join(dir, "kubeconfig")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/manager")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/manager: %v: %s", err, out)
		}
		if err := envtest.WriteKubeconfig(env.Config, kubeconfig); err != nil {
			return err
		}
		if emptyRSS, emptyPeak, err = managerProcess(ctx, bin, kubeconfig, "none", 5*time.Second); err != nil {
			return err
		}
		fmt.Printf("cmd/manager process, no CertificateRequests: RSS %.1f MiB (peak %.1f MiB)\n", float64(emptyRSS)/1024, float64(emptyPeak)/1024)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "load.example"}, DNSNames: []string{"load.example"}}, key)
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})

	start := time.Now()
	if err := createRequests(ctx, env, n, func(i int) *cmapi.CertificateRequest {
		return &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Namespace: "load", Name: fmt.Sprintf("other-%d", i), Annotations: map[string]string{cmapi.CertificateNameKey: fmt.Sprintf("other-%d", i)}},
			Spec:       cmapi.CertificateRequestSpec{IssuerRef: cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "Issuer", Name: "ca"}, Request: csr},
		}
	}, nil); err != nil {
		return err
	}
	fmt.Printf("created %d CertificateRequests for cert-manager.io/Issuer in %s\n", n, time.Since(start).Round(time.Millisecond))
	if own > 0 {
		crtPEM, caPEM, err := issuedPEM(key)
		if err != nil {
			return err
		}
		start = time.Now()
		if err := createRequests(ctx, env, own, func(i int) *cmapi.CertificateRequest {
			return &cmapi.CertificateRequest{
				ObjectMeta: metav1.ObjectMeta{Namespace: "load", Name: fmt.Sprintf("ours-%d", i), Annotations: map[string]string{cmapi.CertificateNameKey: fmt.Sprintf("ours-%d", i)}},
				Spec:       cmapi.CertificateRequestSpec{IssuerRef: cmmeta.IssuerReference{Group: "scep.certificates.dev", Kind: "SCEPProfile", Name: "corp"}, Request: csr},
			}
		}, func(cr *cmapi.CertificateRequest) {
			now := metav1.Now()
			cr.Status = cmapi.CertificateRequestStatus{Certificate: crtPEM, CA: caPEM, Conditions: []cmapi.CertificateRequestCondition{
				{Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue, Reason: "bench", LastTransitionTime: &now},
				{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: cmapi.CertificateRequestReasonIssued, LastTransitionTime: &now},
			}}
		}); err != nil {
			return err
		}
		fmt.Printf("created %d finished CertificateRequests for scep.certificates.dev/SCEPProfile in %s\n", own, time.Since(start).Round(time.Millisecond))
	}
	if process {
		rss, peak, err := managerProcess(ctx, bin, kubeconfig, "foreign", 5*time.Second)
		if err != nil {
			return err
		}
		fmt.Printf("cmd/manager process, %d foreign and %d finished own CertificateRequests: RSS %.1f MiB (peak %.1f MiB); %+.1f MiB over none\n", n, own, float64(rss)/1024, float64(peak)/1024, float64(rss-emptyRSS)/1024)
	}

	baseHeap, baseRSS := heapMiB(), procstatus.RSS(procstatus.Self)
	opts := ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Client:                 controllers.ClientOptions(),
		// The API server of this bench can select requests by issuer
		// (cert-manager's CRDs declare the field), so CacheOptions would
		// cache none of the foreign requests; this in-process part measures
		// the fallback for API servers that cannot, the transform.
		Cache: controllers.UnselectedCacheOptions(),
	}
	if !transform {
		opts.Cache = cache.Options{}
	}
	mgr, err := ctrl.NewManager(env.Config, opts)
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := controllers.Setup(mctx, mgr, controllers.Options{ClusterResourceNamespace: "load", CheckInterval: time.Hour, ClusterDomain: "cluster.local", MaxRetryDuration: time.Hour, Logger: mgr.GetLogger()}); err != nil {
		return err
	}
	go func() { _ = mgr.Start(mctx) }()
	if !mgr.GetCache().WaitForCacheSync(mctx) {
		return fmt.Errorf("caches did not sync")
	}
	cached, err := cachedRequests(mctx, mgr.GetCache())
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let the controllers' first reconciles of every request settle
	heap, rss := heapMiB(), procstatus.RSS(procstatus.Self)
	fmt.Printf("transform=%v: %d requests cached; heap in use %.1f MiB -> %.1f MiB (+%.1f MiB, %.2f KiB per request); RSS %.1f MiB -> %.1f MiB\n",
		transform, cached, baseHeap, heap, heap-baseHeap, (heap-baseHeap)*1024/float64(max(n+own, 1)), float64(baseRSS)/1024, float64(rss)/1024)
	return nil
}

// createRequests creates n requests made by mk with 16 writers; finish,
// when set, then writes each one's status as its issuer would.
func createRequests(ctx context.Context, env *envtest.Env, n int, mk func(int) *cmapi.CertificateRequest, finish func(*cmapi.CertificateRequest)) error {
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				cr := mk(i)
				err := env.Client.Create(ctx, cr)
				if err == nil && finish != nil {
					finish(cr)
					err = env.Client.Status().Update(ctx, cr)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// issuedPEM is a leaf certificate for key and the CA that signed it, as
// an issued request's status holds them (RSA-2048 each).
func issuedPEM(key *rsa.PrivateKey) (crt, ca []byte, err error) {
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Bench SCEP CA"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "load.example"}, DNSNames: []string{"load.example"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

// cachedRequests counts the CertificateRequests in the manager's cache. The
// list is a deep copy of every cached object; it is dropped before the heap
// is measured (it was measured with it before 2026-12-02, which doubled
// the figure per request).
func cachedRequests(ctx context.Context, c interface {
	List(context.Context, client.ObjectList, ...client.ListOption) error
}) (int, error) {
	var list cmapi.CertificateRequestList
	if err := c.List(ctx, &list); err != nil {
		return 0, err
	}
	return len(list.Items), nil
}
