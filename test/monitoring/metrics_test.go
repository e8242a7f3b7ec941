package monitoring_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/test/freeport"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stack"
)

// TestEveryNamedMetricIsExported runs the manager (cmd/manager, as a
// process with the chart's arguments and RBAC) against the whole stack,
// issues one certificate through a server that answers PENDING once (so
// every metric, the pending gauge included, has a series), scrapes
// /metrics and fails for each metric the alerts or the dashboard name that
// the manager does not export.
func TestEveryNamedMetricIsExported(t *testing.T) {
	_, d := readDashboard(t)
	named := metricNames(append(dashboardQueries(d), string(ruleGroups(t)))...)
	if len(named) < 6 {
		t.Fatalf("found only %v in the alerts and dashboard; the name pattern is wrong", named)
	}

	st, err := stack.Up(t.Context(), stack.Options{NoOperator: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Down)
	bin, err := st.BuildManager(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := st.StartManagerProcess(t.Context(), bin, "manager", "--metrics-bind-address="+addr, "--metrics-secure=false")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Kill()
		if t.Failed() {
			t.Logf("manager logs:\n%s", p.Logs())
		}
	})

	srv := scepserver.Start(t, scepserver.Behavior{Pending: 1})
	c := st.Client()
	if err := c.Create(t.Context(), &scepv1alpha1.ClusterSCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics"},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true,
			URL: srv.URL, RetryInterval: &metav1.Duration{Duration: time.Second}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Env.CreateNamespace(t.Context(), "apps"); err != nil {
		t.Fatal(err)
	}
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "metrics"},
		Spec: cmapi.CertificateSpec{
			SecretName: "metrics-tls", CommonName: "metrics.apps",
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048},
			IssuerRef:  cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: "ClusterSCEPProfile", Name: "metrics"},
		},
	}
	if err := c.Create(t.Context(), crt); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(crt), crt); err == nil && stack.IsReady(crt) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Certificate was not Ready within 90s: %s", stack.ReadyMessage(crt))
		}
	}

	families := scrape(t, "http://"+addr+"/metrics")
	for _, name := range named {
		if f := exported(families, name); f == "" {
			t.Errorf("%s is named by the alerts or the dashboard but not exported by the manager", name)
		}
	}
	t.Logf("checked %d metric names against %d exported families", len(named), len(families))
}

// exported returns the family that serves name: name itself, or the
// histogram or summary whose _bucket, _sum or _count series it is.
func exported(families map[string]*dto.MetricFamily, name string) string {
	if f, ok := families[name]; ok && len(f.GetMetric()) > 0 {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if f := families[base]; ok && f != nil && len(f.GetMetric()) > 0 &&
			(f.GetType() == dto.MetricType_HISTOGRAM || (f.GetType() == dto.MetricType_SUMMARY && suffix != "_bucket")) {
			return base
		}
	}
	return ""
}

// scrape reads the Prometheus text exposition at url.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url) //nolint:gosec,noctx // a loopback URL the test made
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return families
}
