package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	issuercontrollers "github.com/cert-manager/issuer-lib/controllers"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/scep-operator/scep-operator/test/certmanager"
	"github.com/scep-operator/scep-operator/test/micromdm"
)

// The bench runs each party as its own process so /proc shows each one's
// CPU time: it re-executes itself with one of these subcommands. Each prints
// "READY ..." on stdout once it serves, and stops on SIGTERM.
var subcommands = map[string]func(ctx context.Context, args []string) error{
	"certmanager": runCertManager,
	"scep-server": runSCEPServer,
	"ceiling":     runCeiling,
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
}

// runCertManager runs cert-manager's real controllers (test/certmanager)
// against the kubeconfig's API server, with Go's /debug/pprof and
// cert-manager's metrics on loopback ports: it prints the pprof address and
// the metrics URL after READY.
func runCertManager(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("certmanager", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the API server")
	controllers := fs.String("controllers", "", "comma-separated controller names (empty: test/certmanager's defaults)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	metrics, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	opts := certmanager.Options{CertificateRequestMinimumBackoff: time.Minute, MetricsListener: metrics}
	if *controllers != "" {
		opts.Controllers = strings.Split(*controllers, ",")
	}
	stop, err := certmanager.Start(ctx, cfg, opts)
	if err != nil {
		return err
	}
	pprofAddr, err := servePprof(ctx)
	if err != nil {
		return err
	}
	fmt.Println("READY", pprofAddr, "http://"+metrics.Addr().String()+"/metrics")
	<-ctx.Done()
	stop()
	return nil
}

// scepStats are the SCEP server's counters, served as JSON.
type scepStats struct {
	// Requests are HTTP requests by operation.
	Requests map[string]int `json:"requests"`
	// Messages are pkiMessages by messageType.
	Messages map[string]int `json:"messages"`
}

// httpTotal is every HTTP request the server saw.
func (s scepStats) httpTotal() int {
	n := 0
	for _, v := range s.Requests {
		n += v
	}
	return n
}

// depotStats is what a SCEP server's depot says it issued.
type depotStats struct {
	// Certificates counts the issued certificates.
	Certificates int `json:"certificates"`
	// Keys counts their distinct public keys.
	Keys int `json:"keys"`
	// KeysIssuedTwice counts keys with more than one certificate: every
	// Certificate of the bench has a key of its own, so each is an
	// enrollment done twice.
	KeysIssuedTwice int `json:"keysIssuedTwice"`
}

func depotOf(certs []*x509.Certificate) depotStats {
	byKey := map[string]int{}
	for _, c := range certs {
		byKey[string(c.RawSubjectPublicKeyInfo)]++
	}
	st := depotStats{Certificates: len(certs), Keys: len(byKey)}
	for _, n := range byKey {
		if n > 1 {
			st.KeysIssuedTwice++
		}
	}
	return st
}

// runSCEPServer runs MicroMDM's SCEP server (test/micromdm, a 2048-bit CA)
// and serves its request counters on a second listener.
func runSCEPServer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("scep-server", flag.ContinueOnError)
	dir := fs.String("dir", "", "empty directory for MicroMDM's depot")
	challenge := fs.String("challenge", "", "static challenge password (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	srv, err := micromdm.New(*dir, micromdm.Options{Challenge: *challenge, CAKeyBits: 2048}, nil)
	if err != nil {
		return err
	}
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		st := scepStats{Requests: map[string]int{}, Messages: map[string]int{}}
		for _, op := range []string{"GetCACaps", "GetCACert", "PKIOperation", ""} {
			st.Requests[op] = srv.Requests(op)
		}
		for _, t := range []string{"PKCSReq", "RenewalReq", "CertPoll", "GetCert", "GetCRL", "malformed"} {
			st.Messages[t] = srv.PKIMessages(t)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("/depot", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(depotOf(srv.Issued()))
	})
	stats := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: mux}
	go func() { _ = stats.Serve(l) }()
	fmt.Println("READY", srv.URL, "http://"+l.Addr().String()+"/stats")
	<-ctx.Done()
	_ = stats.Close()
	return nil
}

// runCeiling runs the ceiling for any external issuer: issuer-lib's
// controllers, configured as the operator configures them (10 workers, ca.crt
// set), with a Sign that signs locally with an in-memory 2048-bit CA key.
func runCeiling(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ceiling", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the API server")
	workers := fs.Int("workers", 10, "CertificateRequests worked on at once (the operator's default)")
	delay := fs.Duration("delay", 0, "how long each request is held before it is signed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	ca, err := newLocalCA()
	if err != nil {
		return err
	}
	ca.delay = *delay
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	// As controller-runtime's GetConfig does for the operator: no client-side
	// rate limit, API Priority and Fairness instead.
	cfg.QPS = -1
	// As the operator's default (--kube-api-compression=false): no gzip.
	cfg.DisableCompression = true
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme, addLocalIssuer} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		return err
	}
	cc := &issuercontrollers.CombinedController{
		IssuerTypes:                    []issuerapi.Issuer{&LocalIssuer{}},
		FieldOwner:                     "bench-ceiling",
		MaxRetryDuration:               time.Minute,
		Check:                          func(context.Context, issuerapi.Issuer) error { return nil },
		Sign:                           ca.sign,
		EventRecorder:                  mgr.GetEventRecorder("bench-ceiling"),
		SetCAOnCertificateRequest:      true, //nolint:staticcheck // as the operator sets it
		DisableKubernetesCSRController: true,
		ControllerOptions:              controller.Options{MaxConcurrentReconciles: *workers},
	}
	if err := cc.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return fmt.Errorf("ceiling: caches did not sync")
	}
	fmt.Println("READY")
	return <-done
}

// localCA signs in memory: the least work any issuer can do per request.
type localCA struct {
	cert  *x509.Certificate
	key   *rsa.PrivateKey
	caPEM []byte
	// delay holds each request before it is signed, in place of a SCEP
	// round trip (the worker is busy meanwhile, as the operator's is).
	delay time.Duration
}

func newLocalCA() (*localCA, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	cert, err := selfSignedCA(key, "bench ceiling CA")
	if err != nil {
		return nil, err
	}
	return &localCA{cert: cert, key: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}, nil
}

// selfSignedCA makes a ten-year CA certificate for key.
func selfSignedCA(key *rsa.PrivateKey, cn string) (*x509.Certificate, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func (ca *localCA) sign(ctx context.Context, cro signer.CertificateRequestObject, _ issuerapi.Issuer) (signer.PEMBundle, error) {
	if ca.delay > 0 {
		select {
		case <-time.After(ca.delay):
		case <-ctx.Done():
			return signer.PEMBundle{}, ctx.Err()
		}
	}
	details, err := cro.GetCertificateDetails()
	if err != nil {
		return signer.PEMBundle{}, signer.PermanentError{Err: err}
	}
	tmpl, err := details.CertificateTemplate()
	if err != nil {
		return signer.PEMBundle{}, signer.PermanentError{Err: err}
	}
	if tmpl.SerialNumber == nil {
		if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)); err != nil {
			return signer.PEMBundle{}, err
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, tmpl.PublicKey, ca.key)
	if err != nil {
		return signer.PEMBundle{}, err
	}
	return signer.PEMBundle{ChainPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), CAPEM: ca.caPEM}, nil
}
