// Package chart_test checks the Helm chart charts/scep-operator with a real
// helm binary (bin/helm, built by hack/helm.sh; or $HELM_BIN): helm lint, and
// helm template with several value sets whose output is parsed and checked,
// above all for what the operator may do with Secrets. It also checks that the
// chart's CRDs are copies of config/crd/bases, that the chart's RBAC equals
// config/rbac/role.yaml, which controller-gen generates from the
// +kubebuilder:rbac markers, and that the kustomize install (config/default
// and config/overlays, built by kubectl kustomize: $KUBEBUILDER_ASSETS/kubectl
// or bin/kubectl) grants exactly what the chart grants.
package chart_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const (
	modulePath  = "github.com/scep-operator/scep-operator"
	chartRel    = "charts/scep-operator"
	releaseName = "rel"
	releaseNS   = "scep-system"
	fullname    = "rel-scep-operator"
	// kubeVersion is passed to helm so that a helm built without the
	// link-time Kubernetes version (default 1.20) still satisfies the
	// chart's kubeVersion.
	kubeVersion = "1.37.0"
)

var (
	repo        string // the repository root
	helmPath    string // the helm binary
	kubectlPath string // the kubectl binary, for kubectl kustomize
	helmHome    string // HELM_{CACHE,CONFIG,DATA}_HOME, so tests touch no user state
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/chart:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	var err error
	if repo, err = findRepoRoot(); err != nil {
		return 0, err
	}
	helmPath = os.Getenv("HELM_BIN")
	if helmPath == "" {
		helmPath = filepath.Join(repo, "bin", "helm")
	}
	if fi, err := os.Stat(helmPath); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		// Never skip: a chart nobody lints is a chart that breaks.
		return 0, fmt.Errorf("no helm binary at %s (set HELM_BIN or run make helm, i.e. hack/helm.sh)", helmPath)
	}
	kubectlPath = filepath.Join(repo, "bin", "kubectl")
	if assets := os.Getenv("KUBEBUILDER_ASSETS"); assets != "" {
		kubectlPath = filepath.Join(assets, "kubectl")
	}
	if fi, err := os.Stat(kubectlPath); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return 0, fmt.Errorf("no kubectl binary at %s (set KUBEBUILDER_ASSETS or run make envtest, i.e. hack/envtest-binaries.sh)", kubectlPath)
	}
	if helmHome, err = os.MkdirTemp("", "chart-test-helm-"); err != nil {
		return 0, err
	}
	defer os.RemoveAll(helmHome)
	return m.Run(), nil
}

// findRepoRoot walks up from the working directory to the go.mod of this
// module.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && f[1] == modulePath {
					return dir, nil
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func chartDir() string { return filepath.Join(repo, chartRel) }

// helm runs the helm binary and returns its stdout; err carries stderr.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmPath, args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
		"KUBECONFIG="+filepath.Join(helmHome, "no-kubeconfig"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// valuesFile writes values (JSON is YAML) to a temporary file.
func valuesFile(t *testing.T, values map[string]any) string {
	t.Helper()
	b, err := json.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// kustomize builds a kustomization directory of the repository (e.g.
// config/default) with kubectl kustomize and parses the output.
func kustomize(t *testing.T, dir string) []object {
	t.Helper()
	cmd := exec.Command(kubectlPath, "kustomize", filepath.Join(repo, dir))
	cmd.Dir = repo
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return checkObjects(t, parseDocs(t, stdout.String()))
}

// templateErr runs helm template with values.
func templateErr(t *testing.T, values map[string]any) (string, error) {
	t.Helper()
	return templateReleaseErr(t, releaseName, releaseNS, values)
}

// templateReleaseErr runs helm template for release name in namespace ns.
func templateReleaseErr(t *testing.T, name, ns string, values map[string]any) (string, error) {
	t.Helper()
	args := []string{"template", name, chartDir(), "--namespace", ns, "--kube-version", kubeVersion}
	if values != nil {
		args = append(args, "--values", valuesFile(t, values))
	}
	return helm(t, args...)
}

// object is one rendered manifest.
type object map[string]any

func (o object) kind() string       { return str(o, "kind") }
func (o object) apiVersion() string { return str(o, "apiVersion") }
func (o object) name() string       { return str(o, "metadata", "name") }
func (o object) namespace() string  { return str(o, "metadata", "namespace") }
func (o object) id() string {
	return fmt.Sprintf("%s %s/%s", o.kind(), o.namespace(), o.name())
}

// into converts o (or a part of it) to a typed value through JSON.
func into(t *testing.T, v any, out any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

// get follows a path of map keys.
func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			if o, isObj := v.(object); isObj {
				m = o
			} else {
				return nil
			}
		}
		v = m[k]
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

// parseDocs splits a multi-document YAML stream into objects, dropping empty
// documents.
func parseDocs(t *testing.T, data string) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(data)))
	var objs []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading YAML: %v", err)
		}
		var o map[string]any
		if err := utilyaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("parsing YAML document: %v\n%s", err, doc)
		}
		if len(o) == 0 {
			continue
		}
		objs = append(objs, object(o))
	}
	return objs
}

// render runs helm template with values and parses the output.
func render(t *testing.T, values map[string]any) []object {
	t.Helper()
	return renderRelease(t, releaseName, releaseNS, values)
}

// renderRelease renders release name in namespace ns.
func renderRelease(t *testing.T, name, ns string, values map[string]any) []object {
	t.Helper()
	out, err := templateReleaseErr(t, name, ns, values)
	if err != nil {
		t.Fatal(err)
	}
	return checkObjects(t, parseDocs(t, out))
}

// checkObjects fails t when an object lacks kind, apiVersion or name, or
// comes twice.
func checkObjects(t *testing.T, objs []object) []object {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range objs {
		if o.kind() == "" || o.apiVersion() == "" || o.name() == "" {
			t.Fatalf("rendered object without kind, apiVersion or name: %v", o)
		}
		if seen[o.id()] {
			t.Fatalf("rendered %s twice", o.id())
		}
		seen[o.id()] = true
	}
	return objs
}

func find(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func findOne(t *testing.T, objs []object, kind, namespace, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.kind() == kind && o.namespace() == namespace && o.name() == name {
			return o
		}
	}
	t.Fatalf("no %s %s/%s rendered", kind, namespace, name)
	return nil
}

func has(objs []object, kind, namespace, name string) bool {
	for _, o := range objs {
		if o.kind() == kind && o.namespace() == namespace && o.name() == name {
			return true
		}
	}
	return false
}

// ---- RBAC analysis ----

// grant is what one binding gives the operator's ServiceAccount on Secrets.
type grant struct {
	scope   string // a namespace, or "*" for cluster-wide
	binding string
	verbs   []string
}

// matches reports whether an RBAC list contains want or "*".
func matches(list []string, want string) bool {
	return slices.Contains(list, want) || slices.Contains(list, "*")
}

// rulesOf returns the rules of the Role or ClusterRole a binding refers to.
func rulesOf(t *testing.T, objs []object, bindingNS string, ref rbacv1.RoleRef) []rbacv1.PolicyRule {
	t.Helper()
	ns := ""
	if ref.Kind == "Role" {
		ns = bindingNS
	}
	for _, o := range objs {
		if o.kind() == ref.Kind && o.name() == ref.Name && o.namespace() == ns {
			var rules []rbacv1.PolicyRule
			into(t, o["rules"], &rules)
			return rules
		}
	}
	t.Fatalf("binding refers to %s %q (namespace %q), which is not rendered", ref.Kind, ref.Name, ns)
	return nil
}

// boundRules returns, for each binding of the subject, its scope and rules.
func boundRules(t *testing.T, objs []object, saNS, saName string) map[string][]rbacv1.PolicyRule {
	t.Helper()
	out := map[string][]rbacv1.PolicyRule{}
	for _, o := range objs {
		if o.kind() != "RoleBinding" && o.kind() != "ClusterRoleBinding" {
			continue
		}
		var b rbacv1.RoleBinding // the same shape as ClusterRoleBinding
		into(t, o, &b)
		bound := false
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == saName && s.Namespace == saNS {
				bound = true
			}
		}
		if !bound {
			continue
		}
		scope := o.namespace()
		if o.kind() == "ClusterRoleBinding" {
			scope = "*"
		}
		key := scope + " " + o.kind() + "/" + o.name()
		out[key] = append(out[key], rulesOf(t, objs, o.namespace(), b.RoleRef)...)
	}
	return out
}

// secretGrants lists what the chart's ServiceAccount may do with Secrets,
// binding by binding.
func secretGrants(t *testing.T, objs []object) []grant {
	t.Helper()
	return secretGrantsFor(t, objs, fullname)
}

// secretGrantsFor lists what ServiceAccount sa of the release namespace may
// do with Secrets, binding by binding.
func secretGrantsFor(t *testing.T, objs []object, sa string) []grant {
	t.Helper()
	var out []grant
	for key, rules := range boundRules(t, objs, releaseNS, sa) {
		scope, binding, _ := strings.Cut(key, " ")
		var verbs []string
		for _, r := range rules {
			if matches(r.APIGroups, "") && matches(r.Resources, "secrets") {
				verbs = append(verbs, r.Verbs...)
			}
		}
		if len(verbs) > 0 {
			sort.Strings(verbs)
			out = append(out, grant{scope: scope, binding: binding, verbs: slices.Compact(verbs)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].scope+out[i].binding < out[j].scope+out[j].binding })
	return out
}

// secretVerbsByScope merges the grants per scope.
func secretVerbsByScope(grants []grant) map[string][]string {
	out := map[string][]string{}
	for _, g := range grants {
		out[g.scope] = append(out[g.scope], g.verbs...)
	}
	for k, v := range out {
		sort.Strings(v)
		out[k] = slices.Compact(v)
	}
	return out
}

var (
	manageVerbs = []string{"create", "get", "patch"}
	readVerbs   = []string{"get"}
)

func checkSecretScopes(t *testing.T, objs []object, want map[string][]string) {
	t.Helper()
	got := secretVerbsByScope(secretGrants(t, objs))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Secret verbs per namespace (\"*\" = cluster-wide):\n got  %v\n want %v\ngrants: %+v", got, want, secretGrants(t, objs))
	}
}

// ---- tests ----

func TestLint(t *testing.T) {
	for _, args := range [][]string{
		{"lint", chartDir()},
		{"lint", "--strict", chartDir()},
		{"lint", "--strict", "--kube-version", kubeVersion, chartDir(), "--values", valuesFile(t, map[string]any{
			"replicaCount":   3,
			"rebuild":        map[string]any{"clusterWide": true},
			"approver":       map[string]any{"enabled": false},
			"crds":           map[string]any{"enabled": false},
			"serviceMonitor": map[string]any{"enabled": true},
			"networkPolicy": map[string]any{
				"enabled":     true,
				"kubeAPI":     map[string]any{"cidrs": []any{"10.0.0.1/32"}},
				"scepServers": []any{map[string]any{"cidrs": []any{"10.1.2.3/32"}, "ports": []any{443}}},
			},
			"podDisruptionBudget": map[string]any{"maxUnavailable": "50%"},
		})},
	} {
		out, err := helm(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm %s:\n%s", strings.Join(args, " "), out)
		}
		t.Logf("helm %s: %s", args[1], strings.TrimSpace(out))
	}
}

func TestDefaultSecretsOnlyInReleaseNamespace(t *testing.T) {
	objs := render(t, nil)
	checkSecretScopes(t, objs, map[string][]string{releaseNS: manageVerbs})
	for _, o := range objs {
		switch o.kind() {
		case "Role", "ClusterRole":
			var rules []rbacv1.PolicyRule
			into(t, o["rules"], &rules)
			for _, r := range rules {
				if !matches(r.Resources, "secrets") {
					continue
				}
				if o.kind() == "ClusterRole" || o.namespace() != releaseNS {
					t.Errorf("%s has a Secret rule %v; by default only a Role in %s may", o.id(), r, releaseNS)
				}
				if slices.Contains(r.Verbs, "list") || slices.Contains(r.Verbs, "watch") || matches(r.Verbs, "*") {
					t.Errorf("%s lets the operator list or watch Secrets: %v", o.id(), r)
				}
			}
		case "ClusterRoleBinding":
			if strings.Contains(o.name(), "secret") {
				t.Errorf("default render has %s", o.id())
			}
		}
	}
}

func TestSecretNamespaces(t *testing.T) {
	objs := render(t, map[string]any{
		"clusterResourceNamespace": "scep-secrets",
		"rbac":                     map[string]any{"secretNamespaces": []any{"team-a", releaseNS}},
	})
	checkSecretScopes(t, objs, map[string][]string{
		releaseNS:      manageVerbs,
		"scep-secrets": manageVerbs,
		"team-a":       manageVerbs,
	})
	d := findOne(t, objs, "Deployment", releaseNS, fullname)
	if args := managerArgs(t, d); !slices.Contains(args, "--cluster-resource-namespace=scep-secrets") {
		t.Errorf("args %v lack --cluster-resource-namespace=scep-secrets", args)
	}
}

func TestRebuildNamespaces(t *testing.T) {
	objs := render(t, map[string]any{"rebuild": map[string]any{"namespaces": []any{"a", "b"}}})
	checkSecretScopes(t, objs, map[string][]string{
		releaseNS: manageVerbs,
		"a":       readVerbs,
		"b":       readVerbs,
	})
	for _, ns := range []string{"a", "b"} {
		rb := findOne(t, objs, "RoleBinding", ns, fullname+"-rebuild-secrets-reader")
		var b rbacv1.RoleBinding
		into(t, rb, &b)
		if b.RoleRef.Kind != "ClusterRole" {
			t.Errorf("%s refers to a %s; want the ClusterRole with secrets get", rb.id(), b.RoleRef.Kind)
		}
		if rules := rulesOf(t, objs, ns, b.RoleRef); !reflect.DeepEqual(rules, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}) {
			t.Errorf("%s grants %v; want get on secrets only", rb.id(), rules)
		}
	}
	for _, o := range find(objs, "ClusterRoleBinding") {
		if strings.Contains(o.name(), "secret") {
			t.Errorf("rebuild.namespaces rendered %s", o.id())
		}
	}
}

func TestRebuildClusterWide(t *testing.T) {
	objs := render(t, map[string]any{"rebuild": map[string]any{"clusterWide": true, "namespaces": []any{"a"}}})
	checkSecretScopes(t, objs, map[string][]string{
		releaseNS: manageVerbs,
		"*":       readVerbs,
	})
	crb := findOne(t, objs, "ClusterRoleBinding", "", fullname+"-rebuild-secrets-reader")
	var b rbacv1.ClusterRoleBinding
	into(t, crb, &b)
	if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != fullname+"-rebuild-secrets-reader" {
		t.Errorf("%s refers to %v", crb.id(), b.RoleRef)
	}
	if has(objs, "RoleBinding", "a", fullname+"-rebuild-secrets-reader") {
		t.Error("rebuild.clusterWide still rendered the per-namespace RoleBinding")
	}
}

func TestApprover(t *testing.T) {
	objs := render(t, nil)
	cr := findOne(t, objs, "ClusterRole", "", fullname+"-approver")
	var rules []rbacv1.PolicyRule
	into(t, cr["rules"], &rules)
	want := []rbacv1.PolicyRule{{
		APIGroups:     []string{"cert-manager.io"},
		Resources:     []string{"signers"},
		Verbs:         []string{"approve"},
		ResourceNames: []string{"scepprofiles.scep.certificates.dev/*", "clusterscepprofiles.scep.certificates.dev/*"},
	}}
	if !reflect.DeepEqual(rules, want) {
		t.Errorf("approver rules %+v; want %+v", rules, want)
	}
	// The chart's approver rules equal config/rbac/approver_clusterrole.yaml's.
	cfg := readConfigObjects(t, "config/rbac/approver_clusterrole.yaml")
	var cfgRules []rbacv1.PolicyRule
	into(t, findOne(t, cfg, "ClusterRole", "", "cert-manager-approver")["rules"], &cfgRules)
	if !reflect.DeepEqual(normalize(rules), normalize(cfgRules)) {
		t.Errorf("chart approver rules %v differ from config/rbac/approver_clusterrole.yaml's %v", rules, cfgRules)
	}
	crb := findOne(t, objs, "ClusterRoleBinding", "", fullname+"-approver")
	var b rbacv1.ClusterRoleBinding
	into(t, crb, &b)
	if len(b.Subjects) != 1 || b.Subjects[0].Name != "cert-manager" || b.Subjects[0].Namespace != "cert-manager" || b.Subjects[0].Kind != "ServiceAccount" {
		t.Errorf("approver subjects %+v; want ServiceAccount cert-manager/cert-manager", b.Subjects)
	}

	objs = render(t, map[string]any{"approver": map[string]any{"serviceAccount": map[string]any{"name": "cm", "namespace": "pki"}}})
	into(t, findOne(t, objs, "ClusterRoleBinding", "", fullname+"-approver"), &b)
	if len(b.Subjects) != 1 || b.Subjects[0].Name != "cm" || b.Subjects[0].Namespace != "pki" {
		t.Errorf("approver subjects %+v; want pki/cm", b.Subjects)
	}

	objs = render(t, map[string]any{"approver": map[string]any{"enabled": false}})
	for _, o := range objs {
		if strings.HasSuffix(o.name(), "-approver") {
			t.Errorf("approver.enabled=false still rendered %s", o.id())
		}
		if o.kind() == "ClusterRole" {
			var rules []rbacv1.PolicyRule
			into(t, o["rules"], &rules)
			for _, r := range rules {
				if matches(r.APIGroups, "cert-manager.io") && matches(r.Resources, "signers") {
					t.Errorf("approver.enabled=false: %s still has %v", o.id(), r)
				}
			}
		}
	}
}

// managerArgs returns the args of the Deployment's manager container.
func managerArgs(t *testing.T, d object) []string {
	t.Helper()
	return container(t, d)["args"].([]string)
}

func container(t *testing.T, d object) map[string]any {
	t.Helper()
	cs, _ := get(d, "spec", "template", "spec", "containers").([]any)
	for _, c := range cs {
		if m, _ := c.(map[string]any); str(m, "name") == "manager" {
			var args []string
			into(t, m["args"], &args)
			out := map[string]any{}
			for k, v := range m {
				out[k] = v
			}
			out["args"] = args
			return out
		}
	}
	t.Fatalf("no manager container in %s", d.id())
	return nil
}

func TestLeaderElectionAndPDB(t *testing.T) {
	objs := render(t, nil)
	d := findOne(t, objs, "Deployment", releaseNS, fullname)
	if args := managerArgs(t, d); slices.Contains(args, "--leader-elect") {
		t.Errorf("one replica: args %v have --leader-elect", args)
	}
	if pdbs := find(objs, "PodDisruptionBudget"); len(pdbs) != 0 {
		t.Errorf("one replica: rendered %s", pdbs[0].id())
	}
	if has(objs, "Role", releaseNS, fullname+"-leader-election") {
		t.Error("one replica: rendered the leader election Role")
	}

	objs = render(t, map[string]any{"replicaCount": 2})
	d = findOne(t, objs, "Deployment", releaseNS, fullname)
	if n, _ := get(d, "spec", "replicas").(int64); n != 2 {
		t.Errorf("spec.replicas = %v; want 2", get(d, "spec", "replicas"))
	}
	args := managerArgs(t, d)
	for _, want := range []string{"--leader-elect", "--leader-election-namespace=" + releaseNS} {
		if !slices.Contains(args, want) {
			t.Errorf("two replicas: args %v lack %s", args, want)
		}
	}
	pdb := findOne(t, objs, "PodDisruptionBudget", releaseNS, fullname)
	if pdb.apiVersion() != "policy/v1" {
		t.Errorf("PDB apiVersion %s; want policy/v1", pdb.apiVersion())
	}
	if v, _ := get(pdb, "spec", "minAvailable").(int64); v != 1 {
		t.Errorf("PDB minAvailable %v; want 1", get(pdb, "spec", "minAvailable"))
	}
	if !reflect.DeepEqual(get(pdb, "spec", "selector", "matchLabels"), get(d, "spec", "selector", "matchLabels")) {
		t.Errorf("PDB selector %v differs from the Deployment's %v", get(pdb, "spec", "selector"), get(d, "spec", "selector"))
	}
	// The Lease Role, in the release namespace, bound to the operator, equals
	// config/rbac/leader_election_role.yaml's rules.
	role := findOne(t, objs, "Role", releaseNS, fullname+"-leader-election")
	var rules []rbacv1.PolicyRule
	into(t, role["rules"], &rules)
	var cfgRules []rbacv1.PolicyRule
	into(t, findOne(t, readConfigObjects(t, "config/rbac/leader_election_role.yaml"), "Role", "system", "leader-election-role")["rules"], &cfgRules)
	if !reflect.DeepEqual(normalize(rules), normalize(cfgRules)) {
		t.Errorf("leader election rules %v differ from config/rbac/leader_election_role.yaml's %v", rules, cfgRules)
	}
	bound := boundRules(t, objs, releaseNS, fullname)
	if _, ok := bound[releaseNS+" RoleBinding/"+fullname+"-leader-election"]; !ok {
		t.Errorf("the leader election Role is not bound to the operator: %v", bound)
	}

	// leaderElection.enabled with one replica: election, no PDB.
	objs = render(t, map[string]any{"leaderElection": map[string]any{"enabled": true}})
	if args := managerArgs(t, findOne(t, objs, "Deployment", releaseNS, fullname)); !slices.Contains(args, "--leader-elect") {
		t.Errorf("leaderElection.enabled: args %v lack --leader-elect", args)
	}
	if len(find(objs, "PodDisruptionBudget")) != 0 {
		t.Error("leaderElection.enabled with one replica rendered a PDB")
	}
	// podDisruptionBudget.enabled with maxUnavailable.
	objs = render(t, map[string]any{"podDisruptionBudget": map[string]any{"enabled": true, "maxUnavailable": "50%"}})
	pdb = findOne(t, objs, "PodDisruptionBudget", releaseNS, fullname)
	if get(pdb, "spec", "maxUnavailable") != "50%" || get(pdb, "spec", "minAvailable") != nil {
		t.Errorf("PDB spec %v; want maxUnavailable 50%% only", pdb["spec"])
	}
}

func TestDeployment(t *testing.T) {
	objs := render(t, nil)
	d := findOne(t, objs, "Deployment", releaseNS, fullname)
	pod := get(d, "spec", "template", "spec").(map[string]any)
	for path, want := range map[string]any{
		"securityContext.runAsNonRoot":        true,
		"securityContext.runAsUser":           int64(65532),
		"securityContext.seccompProfile.type": "RuntimeDefault",
		"serviceAccountName":                  fullname,
	} {
		if got := get(pod, strings.Split(path, ".")...); got != want {
			t.Errorf("pod %s = %v; want %v", path, got, want)
		}
	}
	c := container(t, d)
	for path, want := range map[string]any{
		"securityContext.allowPrivilegeEscalation": false,
		"securityContext.readOnlyRootFilesystem":   true,
		"securityContext.runAsNonRoot":             true,
		"livenessProbe.httpGet.path":               "/healthz",
		"readinessProbe.httpGet.path":              "/readyz",
		"image":                                    "ghcr.io/scep-operator/scep-operator:0.1.0",
		"imagePullPolicy":                          "IfNotPresent",
		"resources.requests.memory":                "64Mi",
		"resources.limits.memory":                  "256Mi",
	} {
		if got := get(c, strings.Split(path, ".")...); got != want {
			t.Errorf("container %s = %v; want %v", path, got, want)
		}
	}
	if drop, _ := get(c, "securityContext", "capabilities", "drop").([]any); !reflect.DeepEqual(drop, []any{"ALL"}) {
		t.Errorf("capabilities.drop = %v; want [ALL]", drop)
	}
	// The probes' named port is 8081.
	ports := map[string]int64{}
	for _, p := range get(c, "ports").([]any) {
		ports[str(p, "name")], _ = get(p, "containerPort").(int64)
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		port := get(c, probe, "httpGet", "port")
		if name, ok := port.(string); ok {
			port = ports[name]
		}
		if port != int64(8081) {
			t.Errorf("%s port %v; want 8081", probe, port)
		}
	}
	if ports["https"] != 8443 {
		t.Errorf("container ports %v; want https 8443", ports)
	}
	var env []map[string]any
	into(t, c["env"], &env)
	if len(env) == 0 || env[0]["name"] != "POD_NAMESPACE" || str(env[0], "valueFrom", "fieldRef", "fieldPath") != "metadata.namespace" {
		t.Errorf("env %v; want POD_NAMESPACE from metadata.namespace", env)
	}
	if len(env) < 2 || env[1]["name"] != "GOMEMLIMIT" || str(env[1], "valueFrom", "resourceFieldRef", "resource") != "limits.memory" {
		t.Errorf("env %v; want GOMEMLIMIT from the container's limits.memory", env)
	}
	wantArgs := []string{
		"--metrics-bind-address=:8443",
		"--metrics-secure=true",
		"--health-probe-bind-address=:8081",
		"--cluster-resource-namespace=" + releaseNS,
		"--profile-check-interval=10m",
		"--cluster-domain=cluster.local",
		"--max-retry-duration=24h",
		"--zap-log-level=info",
		"--zap-encoder=json",
	}
	if args := managerArgs(t, d); !reflect.DeepEqual(args, wantArgs) {
		t.Errorf("default args\n got  %q\n want %q", args, wantArgs)
	}
	svc := findOne(t, objs, "Service", releaseNS, fullname+"-metrics")
	sp := get(svc, "spec", "ports").([]any)
	if len(sp) != 1 || str(sp[0], "name") != "https" || get(sp[0], "port") != int64(8443) || str(sp[0], "targetPort") != "https" {
		t.Errorf("metrics Service ports %v; want https 8443", sp)
	}
	if !reflect.DeepEqual(get(svc, "spec", "selector"), get(d, "spec", "selector", "matchLabels")) {
		t.Errorf("Service selector %v differs from the Deployment's", get(svc, "spec", "selector"))
	}
	if len(find(objs, "ServiceMonitor")) != 0 || len(find(objs, "NetworkPolicy")) != 0 {
		t.Error("default render has a ServiceMonitor or NetworkPolicy")
	}
	if sa := findOne(t, objs, "ServiceAccount", releaseNS, fullname); sa == nil {
		t.Error("no ServiceAccount")
	}

	// Every knob.
	objs = render(t, map[string]any{
		"image":                    map[string]any{"repository": "reg.example/scep", "tag": "v9", "pullPolicy": "Always"},
		"imagePullSecrets":         []any{map[string]any{"name": "regcred"}},
		"clusterResourceNamespace": "pki",
		"profileCheckInterval":     "5m",
		"clusterDomain":            "corp.internal",
		"maxRetryDuration":         "2h",
		"scepRequestTimeout":       "45s",
		"workers":                  map[string]any{"requests": 64, "profileChecks": 8},
		"logging":                  map[string]any{"level": "debug", "format": "console"},
		"extraArgs":                []any{"--zap-stacktrace-level=panic"},
		"egress":                   map[string]any{"allowCIDRs": []any{"10.20.0.0/16", "fd00:20::/64"}, "denyCIDRs": []any{"10.20.9.0/24"}},
		"extraEnv":                 []any{map[string]any{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}},
		"resources":                map[string]any{"limits": map[string]any{"memory": "1Gi"}},
		"securityContext":          map[string]any{"runAsUser": nil, "runAsGroup": nil},
		"podAnnotations":           map[string]any{"a": "b"},
		"podLabels":                map[string]any{"team": "pki"},
		"nodeSelector":             map[string]any{"kubernetes.io/os": "linux"},
		"tolerations":              []any{map[string]any{"key": "k", "operator": "Exists"}},
		"priorityClassName":        "system-cluster-critical",
		"serviceAccount":           map[string]any{"name": "scep", "annotations": map[string]any{"x": "y"}},
		"metrics":                  map[string]any{"enabled": false},
	})
	d = findOne(t, objs, "Deployment", releaseNS, fullname)
	pod = get(d, "spec", "template", "spec").(map[string]any)
	c = container(t, d)
	for path, want := range map[string]any{
		"image":           "reg.example/scep:v9",
		"imagePullPolicy": "Always",
	} {
		if got := get(c, strings.Split(path, ".")...); got != want {
			t.Errorf("container %s = %v; want %v", path, got, want)
		}
	}
	for path, want := range map[string]any{
		"priorityClassName":                   "system-cluster-critical",
		"serviceAccountName":                  "scep",
		"securityContext.runAsNonRoot":        true,
		"securityContext.seccompProfile.type": "RuntimeDefault",
	} {
		if got := get(pod, strings.Split(path, ".")...); got != want {
			t.Errorf("pod %s = %v; want %v", path, got, want)
		}
	}
	for _, k := range []string{"runAsUser", "runAsGroup"} {
		if _, ok := get(pod, "securityContext").(map[string]any)[k]; ok {
			t.Errorf("securityContext.%s=null still renders it", k)
		}
	}
	if get(pod, "nodeSelector", "kubernetes.io/os") != "linux" || str(get(pod, "imagePullSecrets").([]any)[0], "name") != "regcred" ||
		str(get(pod, "tolerations").([]any)[0], "key") != "k" {
		t.Errorf("pod spec lacks nodeSelector, imagePullSecrets or tolerations: %v", pod)
	}
	if get(d, "spec", "template", "metadata", "annotations", "a") != "b" || get(d, "spec", "template", "metadata", "labels", "team") != "pki" {
		t.Errorf("pod metadata %v lacks podAnnotations or podLabels", get(d, "spec", "template", "metadata"))
	}
	wantArgs = []string{
		"--metrics-bind-address=0",
		"--health-probe-bind-address=:8081",
		"--cluster-resource-namespace=pki",
		"--profile-check-interval=5m",
		"--cluster-domain=corp.internal",
		"--max-retry-duration=2h",
		"--scep-request-timeout=45s",
		"--max-concurrent-reconciles=64",
		"--profile-check-workers=8",
		"--zap-log-level=debug",
		"--zap-encoder=console",
		"--egress-allow-cidrs=10.20.0.0/16,fd00:20::/64",
		"--egress-deny-cidrs=10.20.9.0/24",
		"--zap-stacktrace-level=panic",
	}
	if args := managerArgs(t, d); !reflect.DeepEqual(args, wantArgs) {
		t.Errorf("args\n got  %q\n want %q", args, wantArgs)
	}
	var env2 []map[string]any
	into(t, c["env"], &env2)
	if len(env2) != 3 || env2[2]["name"] != "HTTPS_PROXY" {
		t.Errorf("env %v lacks HTTPS_PROXY", env2)
	}
	// Helm merges maps with the defaults: the requests stay.
	if get(c, "resources", "limits", "memory") != "1Gi" || get(c, "resources", "requests", "memory") != "64Mi" {
		t.Errorf("resources %v; want limits.memory 1Gi and the default requests", c["resources"])
	}
	sa := findOne(t, objs, "ServiceAccount", releaseNS, "scep")
	if get(sa, "metadata", "annotations", "x") != "y" {
		t.Errorf("ServiceAccount annotations %v", get(sa, "metadata", "annotations"))
	}
	// Every binding names the custom ServiceAccount.
	if g := secretVerbsByScope(secretGrantsFor(t, objs, "scep")); !reflect.DeepEqual(g, map[string][]string{releaseNS: manageVerbs, "pki": manageVerbs}) {
		t.Errorf("Secret verbs of ServiceAccount scep: %v", g)
	}
	if has(objs, "Service", releaseNS, fullname+"-metrics") {
		t.Error("metrics.enabled=false still rendered the metrics Service")
	}

	// A digest wins over the tag.
	digest := "sha256:" + strings.Repeat("ab", 32)
	objs = render(t, map[string]any{"image": map[string]any{"digest": digest}})
	if img := container(t, findOne(t, objs, "Deployment", releaseNS, fullname))["image"]; img != "ghcr.io/scep-operator/scep-operator@"+digest {
		t.Errorf("image %v; want the digest reference", img)
	}
}

func TestServiceMonitorAndNetworkPolicy(t *testing.T) {
	objs := render(t, map[string]any{
		"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}, "interval": "30s"},
		"networkPolicy": map[string]any{
			"enabled": true,
			"scepServers": []any{
				map[string]any{"cidrs": []any{"10.20.0.15/32", "10.20.0.16/32"}, "ports": []any{80, 443}},
				// The single cidr of earlier chart versions.
				map[string]any{"cidr": "10.30.0.0/24", "ports": []any{443}},
			},
			"kubeAPI":     map[string]any{"cidrs": []any{"172.18.0.2/32", "172.18.0.3/32"}, "ports": []any{6443}},
			"metricsFrom": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}}}},
		},
	})
	sm := findOne(t, objs, "ServiceMonitor", releaseNS, fullname)
	if sm.apiVersion() != "monitoring.coreos.com/v1" || get(sm, "metadata", "labels", "release") != "prom" {
		t.Errorf("ServiceMonitor %v", sm)
	}
	eps := get(sm, "spec", "endpoints").([]any)
	if len(eps) != 1 || str(eps[0], "port") != "https" || str(eps[0], "interval") != "30s" || str(eps[0], "scheme") != "https" ||
		str(eps[0], "bearerTokenFile") != "/var/run/secrets/kubernetes.io/serviceaccount/token" || get(eps[0], "tlsConfig", "insecureSkipVerify") != true {
		t.Errorf("ServiceMonitor endpoints %v; want https with the ServiceAccount token, not verifying the self-signed certificate", eps)
	}
	np := findOne(t, objs, "NetworkPolicy", releaseNS, fullname)
	type npSpec struct {
		PolicyTypes []string `json:"policyTypes"`
		Ingress     []struct {
			Ports []struct {
				Port     any    `json:"port"`
				Protocol string `json:"protocol"`
			} `json:"ports"`
			From []map[string]any `json:"from"`
		} `json:"ingress"`
		Egress []struct {
			To []struct {
				IPBlock *struct {
					CIDR string `json:"cidr"`
				} `json:"ipBlock"`
				NamespaceSelector map[string]any `json:"namespaceSelector"`
				PodSelector       map[string]any `json:"podSelector"`
			} `json:"to"`
			Ports []struct {
				Port     any    `json:"port"`
				Protocol string `json:"protocol"`
			} `json:"ports"`
		} `json:"egress"`
	}
	var spec npSpec
	into(t, np["spec"], &spec)
	if !reflect.DeepEqual(spec.PolicyTypes, []string{"Ingress", "Egress"}) {
		t.Errorf("policyTypes %v", spec.PolicyTypes)
	}
	egress := map[string]bool{} // "<to>:<port>/<proto>"
	for _, e := range spec.Egress {
		var tos []string
		for _, to := range e.To {
			switch {
			case to.IPBlock != nil:
				tos = append(tos, to.IPBlock.CIDR)
			case to.PodSelector != nil:
				tos = append(tos, "dns")
			}
		}
		if len(tos) == 0 {
			tos = []string{"any"}
		}
		for _, to := range tos {
			for _, p := range e.Ports {
				egress[fmt.Sprintf("%s:%v/%s", to, p.Port, p.Protocol)] = true
			}
		}
	}
	wantEgress := []string{
		"dns:53/UDP", "dns:53/TCP", "172.18.0.2/32:6443/TCP", "172.18.0.3/32:6443/TCP",
		"10.20.0.15/32:80/TCP", "10.20.0.15/32:443/TCP", "10.20.0.16/32:80/TCP", "10.20.0.16/32:443/TCP",
		"10.30.0.0/24:443/TCP",
	}
	for _, want := range wantEgress {
		if !egress[want] {
			t.Errorf("egress %v lacks %s", egress, want)
		}
	}
	if len(egress) != len(wantEgress) {
		t.Errorf("egress %v allows more than DNS, the API server and the SCEP servers", egress)
	}
	ingress := map[string]bool{}
	for _, in := range spec.Ingress {
		for _, p := range in.Ports {
			ingress[fmt.Sprintf("%v from=%d", p.Port, len(in.From))] = true
		}
	}
	if !reflect.DeepEqual(ingress, map[string]bool{"8081 from=0": true, "8443 from=1": true}) {
		t.Errorf("ingress %v; want probes 8081 from anywhere, metrics 8443 from monitoring", ingress)
	}
	// No egress rule is open to every address: without the API server's
	// CIDRs, or without any SCEP server, the chart refuses to render.
	for _, e := range spec.Egress {
		if len(e.To) == 0 {
			t.Errorf("egress rule %+v allows every address", e)
		}
	}
	scep := []any{map[string]any{"cidrs": []any{"10.20.0.15/32"}, "ports": []any{443}}}
	for name, c := range map[string]struct {
		np   map[string]any
		want string
	}{
		"no values":            {map[string]any{"enabled": true}, "networkPolicy.enabled needs networkPolicy.kubeAPI.cidrs"},
		"no API server CIDRs":  {map[string]any{"enabled": true, "scepServers": scep}, "networkPolicy.enabled needs networkPolicy.kubeAPI.cidrs"},
		"empty API CIDRs":      {map[string]any{"enabled": true, "scepServers": scep, "kubeAPI": map[string]any{"cidrs": []any{}}}, "networkPolicy.enabled needs networkPolicy.kubeAPI.cidrs"},
		"no SCEP server":       {map[string]any{"enabled": true, "kubeAPI": map[string]any{"cidrs": []any{"10.0.0.1/32"}}}, "networkPolicy.enabled needs networkPolicy.scepServers"},
		"SCEP without a CIDR":  {map[string]any{"enabled": true, "kubeAPI": map[string]any{"cidrs": []any{"10.0.0.1/32"}}, "scepServers": []any{map[string]any{"cidrs": []any{}, "ports": []any{443}}}}, "schema"},
		"SCEP CIDR not a CIDR": {map[string]any{"enabled": true, "kubeAPI": map[string]any{"cidrs": []any{"10.0.0.1/32"}}, "scepServers": []any{map[string]any{"cidrs": []any{"scep.corp"}, "ports": []any{443}}}}, "schema"},
	} {
		if _, err := templateErr(t, map[string]any{"networkPolicy": c.np}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: helm template err = %v; want one containing %q", name, err, c.want)
		}
	}
	// The API server's CIDRs and an egress proxy (extraEgress) instead of
	// SCEP servers: renders, and opens only those.
	objs = render(t, map[string]any{"networkPolicy": map[string]any{
		"enabled":     true,
		"kubeAPI":     map[string]any{"cidrs": []any{"10.0.0.1/32"}},
		"extraEgress": []any{map[string]any{"to": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.9.9.9/32"}}}, "ports": []any{map[string]any{"port": 3128}}}},
	}})
	spec = npSpec{}
	into(t, findOne(t, objs, "NetworkPolicy", releaseNS, fullname)["spec"], &spec)
	if len(spec.Egress) != 3 {
		t.Errorf("egress %+v; want DNS, the API server and the proxy", spec.Egress)
	}
	for _, e := range spec.Egress {
		if len(e.To) == 0 {
			t.Errorf("egress rule %+v allows every address", e)
		}
	}
	// A ServiceMonitor without metrics is refused.
	if _, err := templateErr(t, map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "metrics": map[string]any{"enabled": false}}); err == nil || !strings.Contains(err.Error(), "serviceMonitor.enabled needs metrics.enabled") {
		t.Errorf("serviceMonitor without metrics: err = %v", err)
	}
}

func TestCRDs(t *testing.T) {
	objs := render(t, nil)
	crds := find(objs, "CustomResourceDefinition")
	var names []string
	for _, c := range crds {
		names = append(names, c.name())
		if get(c, "metadata", "annotations", "helm.sh/resource-policy") != "keep" {
			t.Errorf("%s lacks helm.sh/resource-policy: keep", c.id())
		}
	}
	sort.Strings(names)
	if want := []string{"clusterscepprofiles.scep.certificates.dev", "scepprofiles.scep.certificates.dev"}; !reflect.DeepEqual(names, want) {
		t.Errorf("CRDs %v; want %v", names, want)
	}
	for _, c := range find(render(t, map[string]any{"crds": map[string]any{"keep": false}}), "CustomResourceDefinition") {
		if _, ok := get(c, "metadata", "annotations").(map[string]any)["helm.sh/resource-policy"]; ok {
			t.Errorf("crds.keep=false: %s still has the keep annotation", c.id())
		}
	}
	if crds := find(render(t, map[string]any{"crds": map[string]any{"enabled": false}}), "CustomResourceDefinition"); len(crds) != 0 {
		t.Errorf("crds.enabled=false still rendered %d CRDs", len(crds))
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"unknown top-level value":  {"replicas": 2},
		"unknown nested value":     {"rebuild": map[string]any{"namespace": []any{"a"}}},
		"unknown approver value":   {"approver": map[string]any{"serviceAccount": map[string]any{"name": "x", "namespace": "y", "kind": "User"}}},
		"replicaCount string":      {"replicaCount": "two"},
		"clusterWide string":       {"rebuild": map[string]any{"clusterWide": "yes"}},
		"namespaces not a list":    {"rebuild": map[string]any{"namespaces": "a,b"}},
		"bad namespace name":       {"rbac": map[string]any{"secretNamespaces": []any{"Team_A"}}},
		"bad log format":           {"logging": map[string]any{"format": "xml"}},
		"bad log level":            {"logging": map[string]any{"level": "verbose"}},
		"bad duration":             {"profileCheckInterval": "1d"},
		"no request workers":       {"workers": map[string]any{"requests": 0}},
		"workers as a string":      {"workers": map[string]any{"profileChecks": "8"}},
		"bad request timeout":      {"scepRequestTimeout": "30"},
		"negative replicas":        {"replicaCount": -1},
		"bad pull policy":          {"image": map[string]any{"pullPolicy": "Sometimes"}},
		"root user":                {"securityContext": map[string]any{"runAsUser": 0}},
		"scep server without cidr": {"networkPolicy": map[string]any{"scepServers": []any{map[string]any{"ports": []any{443}}}}},
		"port out of range":        {"networkPolicy": map[string]any{"kubeAPI": map[string]any{"ports": []any{70000}}}},
		"egress not a CIDR":        {"egress": map[string]any{"denyCIDRs": []any{"example.com"}}},
		"egress CIDRs as a string": {"egress": map[string]any{"allowCIDRs": "10.0.0.0/8"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := templateErr(t, values)
			if err == nil {
				t.Fatalf("helm template accepted %v", values)
			}
			if !strings.Contains(err.Error(), "schema") {
				t.Errorf("error does not come from values.schema.json: %v", err)
			}
		})
	}
	// Good values pass: an integer log level, a percentage, null user.
	for name, values := range map[string]map[string]any{
		"integer log level": {"logging": map[string]any{"level": 3}},
		"string log level":  {"logging": map[string]any{"level": "2"}},
		"global":            {"global": map[string]any{"imageRegistry": "x"}},
	} {
		if _, err := templateErr(t, values); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// readConfigObjects parses a YAML file of the repository.
func readConfigObjects(t *testing.T, rel string) []object {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, rel))
	if err != nil {
		t.Fatal(err)
	}
	return parseDocs(t, string(b))
}

// TestChartCRDsMatchConfig fails when the chart's CRDs drift from
// config/crd/bases (run hack/sync-chart-crds.sh, which make manifests runs).
func TestChartCRDsMatchConfig(t *testing.T) {
	// 1. The files are exactly what hack/sync-chart-crds.sh writes.
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(repo, "hack", "sync-chart-crds.sh"), out)
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/sync-chart-crds.sh: %v\n%s", err, b)
	}
	chartCRDs := filepath.Join(chartDir(), "templates", "crds")
	want, _ := filepath.Glob(filepath.Join(out, "*.yaml"))
	got, _ := filepath.Glob(filepath.Join(chartCRDs, "*.yaml"))
	base := func(ps []string) []string {
		var out []string
		for _, p := range ps {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if !reflect.DeepEqual(base(got), base(want)) {
		t.Fatalf("chart CRD files %v; config/crd/bases gives %v: run hack/sync-chart-crds.sh", base(got), base(want))
	}
	for _, p := range want {
		w, _ := os.ReadFile(p)
		g, err := os.ReadFile(filepath.Join(chartCRDs, filepath.Base(p)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s drifted from config/crd/bases: run hack/sync-chart-crds.sh (make manifests)", filepath.Join(chartRel, "templates", "crds", filepath.Base(p)))
		}
	}

	// 2. Rendered, they equal config/crd/bases but for the chart's labels and
	// the keep annotation.
	rendered := map[string]object{}
	for _, c := range find(render(t, nil), "CustomResourceDefinition") {
		md := c["metadata"].(map[string]any)
		delete(md, "labels")
		ann := md["annotations"].(map[string]any)
		delete(ann, "helm.sh/resource-policy")
		if len(ann) == 0 {
			delete(md, "annotations")
		}
		rendered[c.name()] = c
	}
	bases, _ := filepath.Glob(filepath.Join(repo, "config", "crd", "bases", "*.yaml"))
	if len(bases) == 0 {
		t.Fatal("no CRDs in config/crd/bases")
	}
	for _, p := range bases {
		b, _ := os.ReadFile(p)
		for _, c := range parseDocs(t, string(b)) {
			r, ok := rendered[c.name()]
			if !ok {
				t.Errorf("the chart does not render CRD %s of %s", c.name(), filepath.Base(p))
				continue
			}
			if !reflect.DeepEqual(map[string]any(r), map[string]any(c)) {
				t.Errorf("the chart's CRD %s differs from %s: run hack/sync-chart-crds.sh", c.name(), filepath.Base(p))
			}
			delete(rendered, c.name())
		}
	}
	for name := range rendered {
		t.Errorf("the chart renders CRD %s, which config/crd/bases lacks", name)
	}
}

// atom is one (group, resource, verb, resourceName) permission. A
// non-resource URL is an atom with group nonResourceURL and the URL as its
// resource.
type atom struct{ group, resource, verb, name string }

const nonResourceURL = "(nonResourceURL)"

func expand(rules []rbacv1.PolicyRule) map[atom]bool {
	out := map[atom]bool{}
	for _, r := range rules {
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				out[atom{nonResourceURL, u, v, ""}] = true
			}
		}
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out[atom{g, res, v, n}] = true
					}
				}
			}
		}
	}
	return out
}

func normalize(rules []rbacv1.PolicyRule) []atom {
	var out []atom
	for a := range expand(rules) {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
	return out
}

// TestClusterRoleCoversGeneratedRole fails when the +kubebuilder:rbac markers
// (config/rbac/role.yaml) grant something the chart does not, or the chart
// grants something the markers do not: the generated ClusterRole is the
// chart's ClusterRole, the generated Role (Secrets, in the operator's
// namespace) the chart's secrets Role of the release namespace.
func TestClusterRoleCoversGeneratedRole(t *testing.T) {
	cfg := readConfigObjects(t, "config/rbac/role.yaml")
	var generated, generatedNS []rbacv1.PolicyRule
	into(t, findOne(t, cfg, "ClusterRole", "", "manager-role")["rules"], &generated)
	into(t, findOne(t, cfg, "Role", "system", "manager-role")["rules"], &generatedNS)
	if len(generated) == 0 || len(generatedNS) == 0 {
		t.Fatal("config/rbac/role.yaml has no ClusterRole or no Role rules")
	}
	for a := range expand(generated) {
		if a.resource == "secrets" || a.resource == "*" {
			t.Errorf("config/rbac/role.yaml's ClusterRole grants %+v: Secrets are granted only in namespaces (a +kubebuilder:rbac marker with namespace=system)", a)
		}
	}

	objs := render(t, nil)
	var clusterRules, secretRules []rbacv1.PolicyRule
	into(t, findOne(t, objs, "ClusterRole", "", fullname)["rules"], &clusterRules)
	into(t, findOne(t, objs, "Role", releaseNS, fullname+"-secrets")["rules"], &secretRules)
	// The cluster-wide role is bound cluster-wide to the operator.
	if _, ok := boundRules(t, objs, releaseNS, fullname)["* ClusterRoleBinding/"+fullname]; !ok {
		t.Error("the chart's ClusterRole is not bound to the operator")
	}
	for _, c := range []struct {
		what            string
		chart, markers  []rbacv1.PolicyRule
		chartFile, kind string
	}{
		{"cluster-wide", clusterRules, generated, "templates/clusterrole.yaml", "ClusterRole"},
		{"in the operator's namespace", secretRules, generatedNS, "templates/secrets-rbac.yaml", "Role"},
	} {
		chart, gen := expand(c.chart), expand(c.markers)
		for a := range gen {
			if !chart[a] {
				t.Errorf("config/rbac/role.yaml's %s grants %+v %s; the chart (%s) does not: a +kubebuilder:rbac marker changed", c.kind, a, c.what, c.chartFile)
			}
		}
		for a := range chart {
			if !gen[a] {
				t.Errorf("the chart (%s) grants %+v %s, which config/rbac/role.yaml's %s does not", c.chartFile, a, c.what, c.kind)
			}
		}
	}
}

// TestReadmeDocumentsEveryValue fails when a value of values.yaml is missing
// from the README's table.
func TestReadmeDocumentsEveryValue(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(chartDir(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(chartDir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := utilyaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			path := prefix + k
			if bytes.Contains(readme, []byte("| `"+path+"` |")) {
				continue
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(path+".", sub)
				continue
			}
			t.Errorf("README.md's values table lacks %s", path)
		}
	}
	walk("", values)
}

// TestMetrics checks metrics.secure (the default: HTTPS, authenticated and
// authorized scrapes) and its opt-out, plain HTTP.
func TestMetrics(t *testing.T) {
	// Secure by default: the operator may review tokens and access; the
	// metrics-reader role is offered, bound to nobody.
	objs := render(t, nil)
	auth := findOne(t, objs, "ClusterRole", "", fullname+"-metrics-auth")
	var rules []rbacv1.PolicyRule
	into(t, auth["rules"], &rules)
	wantAuth := []rbacv1.PolicyRule{
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
	}
	if !reflect.DeepEqual(normalize(rules), normalize(wantAuth)) {
		t.Errorf("metrics-auth rules %v; want %v", rules, wantAuth)
	}
	if _, ok := boundRules(t, objs, releaseNS, fullname)["* ClusterRoleBinding/"+fullname+"-metrics-auth"]; !ok {
		t.Error("the metrics-auth ClusterRole is not bound to the operator")
	}
	var readerRules []rbacv1.PolicyRule
	into(t, findOne(t, objs, "ClusterRole", "", fullname+"-metrics-reader")["rules"], &readerRules)
	if want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}; !reflect.DeepEqual(readerRules, want) {
		t.Errorf("metrics-reader rules %v; want %v", readerRules, want)
	}
	for _, o := range find(objs, "ClusterRoleBinding") {
		var b rbacv1.ClusterRoleBinding
		into(t, o, &b)
		if b.RoleRef.Name == fullname+"-metrics-reader" {
			t.Errorf("%s binds metrics-reader; the admin binds it to Prometheus", o.id())
		}
	}
	// The rules equal config/rbac's.
	for chartName, cfg := range map[string][2]string{
		fullname + "-metrics-auth":   {"config/rbac/metrics_auth_role.yaml", "metrics-auth-role"},
		fullname + "-metrics-reader": {"config/rbac/metrics_reader_role.yaml", "metrics-reader"},
	} {
		var chartRules, cfgRules []rbacv1.PolicyRule
		into(t, findOne(t, objs, "ClusterRole", "", chartName)["rules"], &chartRules)
		into(t, findOne(t, readConfigObjects(t, cfg[0]), "ClusterRole", "", cfg[1])["rules"], &cfgRules)
		if !reflect.DeepEqual(normalize(chartRules), normalize(cfgRules)) {
			t.Errorf("%s rules %v differ from %s's %v", chartName, chartRules, cfg[0], cfgRules)
		}
	}
	d := findOne(t, objs, "Deployment", releaseNS, fullname)
	if vs := get(d, "spec", "template", "spec", "volumes"); vs != nil {
		t.Errorf("volumes %v without metrics.certSecret", vs)
	}

	// A certificate from a Secret, a token from a Secret, a CA.
	objs = render(t, map[string]any{
		"metrics": map[string]any{"certSecret": "scep-metrics-tls"},
		"serviceMonitor": map[string]any{
			"enabled":           true,
			"bearerTokenSecret": map[string]any{"name": "prom-token", "key": "token"},
			"tlsConfig":         map[string]any{"ca": map[string]any{"secret": map[string]any{"name": "scep-metrics-tls", "key": "ca.crt"}}, "serverName": "rel-scep-operator-metrics.scep-system.svc"},
		},
	})
	d = findOne(t, objs, "Deployment", releaseNS, fullname)
	c := container(t, d)
	args := managerArgs(t, d)
	const certPath = "/var/run/secrets/scep-operator/metrics-certs"
	if !slices.Contains(args, "--metrics-cert-path="+certPath) {
		t.Errorf("args %q lack --metrics-cert-path", args)
	}
	mounts, _ := get(c, "volumeMounts").([]any)
	vols, _ := get(d, "spec", "template", "spec", "volumes").([]any)
	if len(mounts) != 1 || str(mounts[0], "mountPath") != certPath || get(mounts[0], "readOnly") != true ||
		len(vols) != 1 || str(vols[0], "secret", "secretName") != "scep-metrics-tls" || str(vols[0], "name") != str(mounts[0], "name") {
		t.Errorf("volumeMounts %v, volumes %v; want the Secret scep-metrics-tls at %s", mounts, vols, certPath)
	}
	ep := get(findOne(t, objs, "ServiceMonitor", releaseNS, fullname), "spec", "endpoints").([]any)[0]
	if str(ep, "scheme") != "https" || str(ep, "authorization", "type") != "Bearer" || str(ep, "authorization", "credentials", "name") != "prom-token" ||
		get(ep, "bearerTokenFile") != nil || get(ep, "tlsConfig", "insecureSkipVerify") != nil || str(ep, "tlsConfig", "ca", "secret", "key") != "ca.crt" {
		t.Errorf("ServiceMonitor endpoint %v; want https, the token Secret, the CA and no insecureSkipVerify", ep)
	}

	// metrics.secure=false: plain HTTP on 8080, no review rights.
	objs = render(t, map[string]any{
		"metrics":        map[string]any{"secure": false, "certSecret": "ignored"},
		"serviceMonitor": map[string]any{"enabled": true},
		"networkPolicy": map[string]any{
			"enabled":     true,
			"kubeAPI":     map[string]any{"cidrs": []any{"10.0.0.1/32"}},
			"scepServers": []any{map[string]any{"cidrs": []any{"10.1.2.3/32"}, "ports": []any{443}}},
		},
	})
	d = findOne(t, objs, "Deployment", releaseNS, fullname)
	args = managerArgs(t, d)
	if !slices.Contains(args, "--metrics-bind-address=:8080") || !slices.Contains(args, "--metrics-secure=false") || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--metrics-cert-path") }) {
		t.Errorf("metrics.secure=false: args %q", args)
	}
	if vs := get(d, "spec", "template", "spec", "volumes"); vs != nil {
		t.Errorf("metrics.secure=false: volumes %v", vs)
	}
	sp := get(findOne(t, objs, "Service", releaseNS, fullname+"-metrics"), "spec", "ports").([]any)
	if len(sp) != 1 || str(sp[0], "name") != "http" || get(sp[0], "port") != int64(8080) {
		t.Errorf("metrics.secure=false: Service ports %v; want http 8080", sp)
	}
	ep = get(findOne(t, objs, "ServiceMonitor", releaseNS, fullname), "spec", "endpoints").([]any)[0]
	if str(ep, "scheme") != "http" || str(ep, "port") != "http" || get(ep, "bearerTokenFile") != nil || get(ep, "tlsConfig") != nil {
		t.Errorf("metrics.secure=false: ServiceMonitor endpoint %v", ep)
	}
	for _, o := range objs {
		if strings.Contains(o.name(), "metrics-auth") || strings.Contains(o.name(), "metrics-reader") {
			t.Errorf("metrics.secure=false still rendered %s", o.id())
		}
	}
	np := findOne(t, objs, "NetworkPolicy", releaseNS, fullname)
	if !strings.Contains(fmt.Sprint(get(np, "spec", "ingress")), "port:8080") {
		t.Errorf("metrics.secure=false: NetworkPolicy ingress %v lacks 8080", get(np, "spec", "ingress"))
	}
	// metrics.enabled=false: none of it.
	for _, o := range render(t, map[string]any{"metrics": map[string]any{"enabled": false, "certSecret": "x"}}) {
		if strings.Contains(o.name(), "metrics") {
			t.Errorf("metrics.enabled=false still rendered %s", o.id())
		}
	}
}
