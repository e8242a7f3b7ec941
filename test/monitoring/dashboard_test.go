package monitoring_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// grafanaVariables are what Grafana substitutes before a query reaches
// Prometheus, and a value of the right kind for each.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$profile", ".*")

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// TestDashboard checks the dashboard's shape (a uid, panel ids unique, every
// panel on the datasource variable, the profile variable), that every query
// parses as PromQL (promtool check rules on them as recording rules), and
// that the sidecar ConfigMap carries the file unchanged with its label.
func TestDashboard(t *testing.T) {
	raw, d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard has uid %q and title %q; want both", d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["profile"] != "query" {
		t.Errorf("template variables %v; want datasource (datasource) and profile (query)", vars)
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		queries += len(p.Targets)
	}
	if queries < 8 {
		t.Errorf("%d queries; want the panels the issue lists (enrollments by result, latency, pending, server errors, readiness, CA/RA expiry)", queries)
	}

	// Every query parses: promtool checks them as recording rules.
	var rules []map[string]string
	for i, q := range dashboardQueries(d) {
		q = grafanaVariables.Replace(q)
		if m := labelValues.FindStringSubmatch(q); m != nil {
			q = m[1]
		}
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": q})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard-queries.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "check", "rules", "dashboard-queries.yaml")

	// The sidecar's ConfigMap.
	cm := renderOne(t, "ConfigMap", "grafanaDashboard.enabled=true", "grafanaDashboard.annotations.grafana_folder=PKI")
	if cm.GetLabels()["grafana_dashboard"] != "1" || cm.GetAnnotations()["grafana_folder"] != "PKI" {
		t.Errorf("dashboard ConfigMap labels %v annotations %v; want grafana_dashboard=1 and grafana_folder=PKI", cm.GetLabels(), cm.GetAnnotations())
	}
	data, _ := cm.Object["data"].(map[string]any)
	if got, _ := data["scep-operator.json"].(string); got != string(bytes.TrimRight(raw, "\n")) {
		t.Error("the ConfigMap's scep-operator.json differs from dashboards/scep-operator.json")
	}
	objs, err := renderChart(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" || o.GetKind() == "PrometheusRule" {
			t.Errorf("the defaults render %s %s; want the dashboard and alerts off", o.GetKind(), o.GetName())
		}
	}
}
