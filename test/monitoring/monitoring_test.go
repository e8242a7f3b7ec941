// Package monitoring_test checks the chart's alerts and dashboard
// (templates/prometheusrule.yaml, dashboards/scep-operator.json): promtool
// (bin/promtool, built by hack/promtool.sh; or $PROMTOOL_BIN) checks the
// rules and runs a unit test per alert (testdata/alerts_test.yaml), the
// dashboard's queries must parse, and every metric either names must be
// exported by a running manager.
package monitoring_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/stack"
)

// promtool returns the promtool binary; never skipped: alerts nobody tests
// are alerts that never fire.
func promtool(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("PROMTOOL_BIN")
	if bin == "" {
		bin = filepath.Join(envtest.RepoRoot(t), "bin", "promtool")
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		t.Fatalf("no promtool at %s (set PROMTOOL_BIN or run make promtool, i.e. hack/promtool.sh)", bin)
	}
	return bin
}

// runPromtool runs promtool in dir and fails t with its output on error.
func runPromtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// renderChart renders the chart as release scep-operator in its namespace,
// with values given as --set.
func renderChart(t *testing.T, values ...string) ([]*unstructured.Unstructured, error) {
	t.Helper()
	return stack.RenderChart(t.Context(), envtest.RepoRoot(t), "scep-operator", "scep-operator", values...)
}

// renderOne renders the chart with values and returns its only object of
// kind.
func renderOne(t *testing.T, kind string, values ...string) *unstructured.Unstructured {
	t.Helper()
	objs, err := renderChart(t, values...)
	if err != nil {
		t.Fatal(err)
	}
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the chart rendered %d objects of kind %s with %v; want 1", len(found), kind, values)
	}
	return found[0]
}

// ruleGroups renders the PrometheusRule at the chart's defaults and returns
// its groups as a Prometheus rules file.
func ruleGroups(t *testing.T) []byte {
	t.Helper()
	pr := renderOne(t, "PrometheusRule", "prometheusRule.enabled=true")
	groups, ok, err := unstructured.NestedSlice(pr.Object, "spec", "groups")
	if err != nil || !ok {
		t.Fatalf("the PrometheusRule has no spec.groups: %v", err)
	}
	b, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dashboard is the part of Grafana's dashboard JSON the tests read.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// readDashboard reads the chart's dashboard file.
func readDashboard(t *testing.T) ([]byte, dashboard) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(envtest.RepoRoot(t), "charts", "scep-operator", "dashboards", "scep-operator.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	return b, d
}

// dashboardQueries returns every PromQL query of the dashboard: panel
// targets and template variables' label_values.
func dashboardQueries(d dashboard) []string {
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			out = append(out, v.Definition)
		}
	}
	return out
}

// operatorMetric matches the names of the operator's own metrics in PromQL:
// they all start scep_. Histogram series (_bucket, _sum, _count) are
// reduced to their family by metricFamily.
var operatorMetric = regexp.MustCompile(`\bscep_[a-z0-9_]*[a-z0-9]\b`)

// metricNames returns the operator metric names in the given texts, sorted
// and without duplicates.
func metricNames(texts ...string) []string {
	var out []string
	for _, s := range texts {
		out = append(out, operatorMetric.FindAllString(s, -1)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
