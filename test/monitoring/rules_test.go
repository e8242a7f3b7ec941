package monitoring_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/scep-operator/scep-operator/test/envtest"
)

// The alerts the issue asks for, each with its severities.
var wantAlerts = map[string][]string{
	"SCEPCACertificateExpiring":  {"critical", "warning"},
	"SCEPEnrollmentsFailing":     {"warning"},
	"SCEPRequestsPendingTooLong": {"warning"},
	"SCEPServerUnreachable":      {"critical"},
	"SCEPProfileNotReady":        {"warning"},
}

// TestAlertRules renders the PrometheusRule at the chart's defaults and runs
// `promtool check rules` and `promtool test rules` on it, and checks that
// every alert has a unit test in which it fires and one in which it does
// not, and carries a severity and a summary.
func TestAlertRules(t *testing.T) {
	dir := t.TempDir()
	rules := ruleGroups(t)
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	out := runPromtool(t, dir, "check", "rules", "rules.yaml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check rules: %s", out)
	}
	tests, err := os.ReadFile(filepath.Join(envtest.RepoRoot(t), "test", "monitoring", "testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	out = runPromtool(t, dir, "test", "rules", "alerts_test.yaml")
	t.Logf("promtool test rules: %s", strings.TrimSpace(out))

	// What the rules define.
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `json:"alert"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(rules, &file); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			got[r.Alert] = append(got[r.Alert], r.Labels["severity"])
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s (%s) lacks a summary or description", r.Alert, r.Labels["severity"])
			}
		}
	}
	for name := range got {
		slices.Sort(got[name])
	}
	for name, sev := range wantAlerts {
		if !slices.Equal(got[name], sev) {
			t.Errorf("alert %s has severities %v; want %v", name, got[name], sev)
		}
	}
	for name := range got {
		if _, ok := wantAlerts[name]; !ok {
			t.Errorf("alert %s is not in wantAlerts: add it there and give it unit tests", name)
		}
	}

	// What the unit tests exercise: each alert fires in one case and stays
	// silent in another, and each severity fires somewhere.
	var unit struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []struct {
					ExpLabels map[string]string `json:"exp_labels"`
				} `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &unit); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range unit.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) == 0 {
				silent[a.Alertname] = true
			}
			for _, e := range a.ExpAlerts {
				fires[a.Alertname+"/"+e.ExpLabels["severity"]] = true
			}
		}
	}
	for name, sevs := range wantAlerts {
		if !silent[name] {
			t.Errorf("no unit test where %s stays silent", name)
		}
		for _, s := range sevs {
			if !fires[name+"/"+s] {
				t.Errorf("no unit test where %s fires with severity %s", name, s)
			}
		}
	}
}

// TestPrometheusRuleValues checks the thresholds reach the rules: a changed
// value changes the rendered expression or duration.
func TestPrometheusRuleValues(t *testing.T) {
	pr := renderOne(t, "PrometheusRule",
		"prometheusRule.enabled=true", "prometheusRule.namespace=monitoring", "prometheusRule.labels.release=kps",
		"prometheusRule.caExpiry.warningDays=45", "prometheusRule.caExpiry.criticalDays=10",
		"prometheusRule.enrollmentsFailing.ratio=1", "prometheusRule.pendingTooLong.for=90m",
		"prometheusRule.serverUnreachable.window=20m", "prometheusRule.profileNotReady.for=1h")
	if pr.GetNamespace() != "monitoring" || pr.GetLabels()["release"] != "kps" {
		t.Errorf("PrometheusRule in %q with labels %v; want namespace monitoring and label release=kps", pr.GetNamespace(), pr.GetLabels())
	}
	b, err := yaml.Marshal(pr.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"< 45 * 86400", ">= 10 * 86400", "< 10 * 86400", "> 1\n", "for: 90m", "[20m]", "for: 1h"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the rendered rules lack %q", want)
		}
	}
	if _, err := renderChart(t, "prometheusRule.enabled=true", "prometheusRule.pendingTooLong.for=soon"); err == nil {
		t.Error("prometheusRule.pendingTooLong.for=soon rendered; want the schema to refuse it")
	}
}
