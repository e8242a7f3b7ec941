package certmanager_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/test/certmanager"
	"github.com/scep-operator/scep-operator/test/envtest"
)

// logger is quiet unless CERTMANAGER_LOG_V is set to a verbosity (e.g. 2),
// because cert-manager at info level logs every sync.
func logger(t *testing.T) logr.Logger {
	v, err := strconv.Atoi(os.Getenv("CERTMANAGER_LOG_V"))
	if err != nil {
		return logr.Discard()
	}
	return testr.NewWithOptions(t, testr.Options{Verbosity: v})
}

// eventually polls cond every 50ms until it returns true, failing t when
// timeout passes; the last error cond returned explains what was missing.
func eventually(t *testing.T, ctx context.Context, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
			return false, nil
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}

func certReady(ctx context.Context, c client.Client, ns, name string) (bool, error) {
	crt := &cmapi.Certificate{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, crt); err != nil {
		return false, err
	}
	for _, cond := range crt.Status.Conditions {
		if cond.Type == cmapi.CertificateConditionReady && cond.Status == cmmeta.ConditionTrue {
			return true, nil
		}
	}
	return false, nil
}

func create(t *testing.T, ctx context.Context, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(ctx, obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func leafCertificate(ns, name string) *cmapi.Certificate {
	return &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: cmapi.CertificateSpec{
			CommonName: name + ".example.com",
			DNSNames:   []string{name + ".example.com"},
			SecretName: name + "-tls",
			IssuerRef:  cmmeta.IssuerReference{Name: "ca", Kind: cmapi.IssuerKind},
		},
	}
}

// verifyLeaf checks the Secret cert-manager wrote: a key pair whose
// certificate chains to ca.crt.
func verifyLeaf(t *testing.T, ctx context.Context, c client.Client, ns, secret, dnsName string) {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: secret}, s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if len(s.Data[k]) == 0 {
			t.Fatalf("Secret %s has no %s", secret, k)
		}
	}
	if _, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"]); err != nil {
		t.Fatalf("tls.crt and tls.key do not match: %v", err)
	}
	block, _ := pem.Decode(s.Data["tls.crt"])
	if block == nil {
		t.Fatal("tls.crt is not PEM")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.Data["ca.crt"]) {
		t.Fatal("ca.crt holds no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName}); err != nil {
		t.Fatalf("tls.crt does not verify against ca.crt: %v", err)
	}
}

func TestStart(t *testing.T) {
	env := envtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := env.Client

	metricsListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsURL := "http://" + metricsListener.Addr().String() + "/metrics"

	goroutines := runtime.NumGoroutine()
	began := time.Now()
	stop, err := certmanager.Start(ctx, env.Config, certmanager.Options{Logger: logger(t), MetricsListener: metricsListener})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		began := time.Now()
		stop()
		t.Logf("cert-manager controllers stopped in %v", time.Since(began).Round(time.Millisecond))
		// cert-manager never shuts down its per-controller event
		// broadcasters; log how many goroutines that leaves behind.
		time.Sleep(100 * time.Millisecond)
		t.Logf("goroutines: %d before Start, %d after stop", goroutines, runtime.NumGoroutine())
	})
	t.Logf("cert-manager controllers started and synced in %v", time.Since(began).Round(time.Millisecond))

	// The cluster resource namespace is created.
	if err := c.Get(ctx, client.ObjectKey{Name: certmanager.DefaultClusterResourceNamespace}, &corev1.Namespace{}); err != nil {
		t.Fatalf("cluster resource namespace: %v", err)
	}

	ns := env.Namespace(t, "cm-selftest")

	// selfsigned ClusterIssuer → CA Certificate → CA Issuer → leaf, all
	// created at once so cert-manager has to resolve the dependencies itself.
	began = time.Now()
	create(t, ctx, c, &cmapi.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "selfsigned"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
	})
	create(t, ctx, c, &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"},
		Spec: cmapi.CertificateSpec{
			IsCA:       true,
			CommonName: "self-test CA",
			SecretName: "ca",
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Name: "selfsigned", Kind: cmapi.ClusterIssuerKind},
		},
	})
	create(t, ctx, c, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "ca"}}},
	})
	create(t, ctx, c, leafCertificate(ns, "leaf"))
	eventually(t, ctx, 60*time.Second, "leaf Certificate Ready", func(ctx context.Context) (bool, error) {
		return certReady(ctx, c, ns, "leaf")
	})
	t.Logf("CA chain and leaf issued %v after creation", time.Since(began).Round(time.Millisecond))
	verifyLeaf(t, ctx, c, ns, "leaf-tls", "leaf.example.com")

	// With the CA Issuer Ready, one more leaf shows the steady-state cost.
	began = time.Now()
	create(t, ctx, c, leafCertificate(ns, "leaf2"))
	eventually(t, ctx, 30*time.Second, "leaf2 Certificate Ready", func(ctx context.Context) (bool, error) {
		return certReady(ctx, c, ns, "leaf2")
	})
	t.Logf("leaf issued by the Ready CA Issuer in %v", time.Since(began).Round(time.Millisecond))
	verifyLeaf(t, ctx, c, ns, "leaf2-tls", "leaf2.example.com")

	// cert-manager's own metrics count reconciles by controller: three
	// Certificates were issued, two of them by the CA Issuer.
	syncs, err := certmanager.SyncCalls(ctx, metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cert-manager's reconciles by controller: %v", syncs)
	for ctrl, least := range map[string]int{"certificates-issuing": 3, "certificaterequests-issuer-ca": 2} {
		if syncs[ctrl] < least {
			t.Errorf("%s reconciled %d times by cert-manager's metrics, want at least %d (all: %v)", ctrl, syncs[ctrl], least, syncs)
		}
	}

	// An external issuer: nobody signs, but cert-manager must create the
	// private key and an approved CertificateRequest carrying the
	// Certificate's annotations.
	const emailAnnotation = "scep.certificates.dev/email"
	create(t, ctx, c, &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ext", Annotations: map[string]string{emailAnnotation: "device@example.com"}},
		Spec: cmapi.CertificateSpec{
			CommonName: "device-1",
			SecretName: "ext-tls",
			IssuerRef:  cmmeta.IssuerReference{Group: "scep.certificates.dev", Kind: "ClusterSCEPProfile", Name: "x"},
		},
	})
	var cr *cmapi.CertificateRequest
	eventually(t, ctx, 30*time.Second, "an approved CertificateRequest for ext", func(ctx context.Context) (bool, error) {
		var list cmapi.CertificateRequestList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for i := range list.Items {
			if list.Items[i].Annotations[cmapi.CertificateNameKey] == "ext" {
				cr = &list.Items[i]
				for _, cond := range cr.Status.Conditions {
					if cond.Type == cmapi.CertificateRequestConditionApproved && cond.Status == cmmeta.ConditionTrue {
						return true, nil
					}
				}
			}
		}
		return false, nil
	})
	if got := cr.Spec.IssuerRef; got.Group != "scep.certificates.dev" || got.Kind != "ClusterSCEPProfile" || got.Name != "x" {
		t.Errorf("CertificateRequest %s issuerRef = %+v", cr.Name, got)
	}
	if got := cr.Annotations[emailAnnotation]; got != "device@example.com" {
		t.Errorf("CertificateRequest %s annotation %s = %q, want it copied from the Certificate (annotations: %v)", cr.Name, emailAnnotation, got, cr.Annotations)
	}
	for _, cond := range cr.Status.Conditions {
		if cond.Type == cmapi.CertificateRequestConditionReady && cond.Status == cmmeta.ConditionTrue {
			t.Errorf("CertificateRequest %s is Ready although nothing signs for ClusterSCEPProfile", cr.Name)
		}
		if cond.Type == cmapi.CertificateRequestConditionApproved {
			t.Logf("CertificateRequest %s approved: reason %q, message %q", cr.Name, cond.Reason, cond.Message)
		}
	}

	crt := &cmapi.Certificate{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ext"}, crt); err != nil {
		t.Fatal(err)
	}
	if crt.Status.NextPrivateKeySecretName == nil {
		t.Fatal("Certificate ext has no status.nextPrivateKeySecretName")
	}
	key := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: *crt.Status.NextPrivateKeySecretName}, key); err != nil {
		t.Fatalf("next private key Secret: %v", err)
	}
	if len(key.Data["tls.key"]) == 0 {
		t.Fatalf("next private key Secret %s has no tls.key", key.Name)
	}
	// The request names the Secret holding its private key (not the
	// Certificate's target Secret): that is where the signer finds the key.
	if got := cr.Annotations[cmapi.CertificateRequestPrivateKeyAnnotationKey]; got != key.Name {
		t.Errorf("CertificateRequest annotation %s = %q, want %s", cmapi.CertificateRequestPrivateKeyAnnotationKey, got, key.Name)
	}
	// The final Secret is only written when the request is signed.
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ext-tls"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret ext-tls: got %v, want NotFound before anyone signs", err)
	}
}

func TestStartRejectsUnknownController(t *testing.T) {
	// Validation happens before any API call, so no API server is needed.
	_, err := certmanager.Start(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, certmanager.Options{Controllers: []string{"certificates-triger"}})
	if err == nil {
		t.Fatal("Start accepted an unknown controller name")
	}
	t.Log(err)
}

func TestDefaultControllersAreKnown(t *testing.T) {
	known := map[string]bool{}
	for _, n := range certmanager.KnownControllers() {
		known[n] = true
	}
	for _, n := range certmanager.DefaultControllers() {
		if !known[n] {
			t.Errorf("default controller %s is not registered", n)
		}
	}
	t.Logf("registered: %v", certmanager.KnownControllers())
}

// TestApproverAloneAndContextEnd runs only the approver, on a
// CertificateRequest made by hand for the external issuer, and checks that
// ending ctx stops the controllers without stop.
func TestApproverAloneAndContextEnd(t *testing.T) {
	env := envtest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, err := certmanager.Start(ctx, env.Config, certmanager.Options{
		Logger:                   logger(t),
		Controllers:              []string{"certificaterequests-approver"},
		ClusterResourceNamespace: "cm-resources",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "cm-resources"}, &corev1.Namespace{}); err != nil {
		t.Fatalf("cluster resource namespace: %v", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device-2"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t, "cm-approver")
	create(t, ctx, env.Client, &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "by-hand"},
		Spec: cmapi.CertificateRequestSpec{
			Request:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			IssuerRef: cmmeta.IssuerReference{Group: "scep.certificates.dev", Kind: "SCEPProfile", Name: "x"},
		},
	})
	eventually(t, ctx, 30*time.Second, "the CertificateRequest approved", func(ctx context.Context) (bool, error) {
		cr := &cmapi.CertificateRequest{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "by-hand"}, cr); err != nil {
			return false, err
		}
		for _, cond := range cr.Status.Conditions {
			if cond.Type == cmapi.CertificateRequestConditionApproved && cond.Status == cmmeta.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})

	cancel()
	stopped := make(chan struct{})
	go func() {
		stop()
		stop() // idempotent
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return after ctx ended")
	}
}
