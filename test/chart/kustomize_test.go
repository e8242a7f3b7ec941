package chart_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// The kustomize install's names: config/default's namespace and namePrefix.
// The chart is rendered into the same namespace, as release scep-operator
// (so its full name is scep-operator too), so that namespaces compare as
// they are.
const (
	kustomizeNS      = "scep-operator-system"
	kustomizeRelease = "scep-operator"
)

// permission is one thing an install lets a subject do, in a scope.
type permission struct {
	subject string // "operator" for the manager's ServiceAccount, else kind namespace/name
	scope   string // a namespace, or "*" for cluster-wide
	atom
}

func (p permission) String() string {
	return fmt.Sprintf("%s may %s %s (group %q, name %q) in %s", p.subject, p.verb, p.resource, p.group, p.name, p.scope)
}

// grants is what an install grants: every permission of every bound
// subject, and the rules of roles it offers unbound (for an admin to bind,
// such as metrics-reader, or joining Kubernetes' view/edit/admin by
// aggregation), each role's rules and the roles it joins as one string.
type grants struct {
	bound   map[permission]bool
	unbound []string
}

// operatorAccount is the ServiceAccount of the install's one Deployment.
func operatorAccount(t *testing.T, objs []object) (namespace, name string) {
	t.Helper()
	ds := find(objs, "Deployment")
	if len(ds) != 1 {
		t.Fatalf("%d Deployments; want the manager's only", len(ds))
	}
	return ds[0].namespace(), str(ds[0], "spec", "template", "spec", "serviceAccountName")
}

// grantsOf normalizes the RBAC of an install: names of roles and bindings
// drop out; what remains is who may do what where.
func grantsOf(t *testing.T, objs []object) grants {
	t.Helper()
	saNS, saName := operatorAccount(t, objs)
	g := grants{bound: map[permission]bool{}}
	referenced := map[string]bool{} // "Kind namespace/name" of the roles bindings name
	for _, o := range objs {
		if o.kind() != "RoleBinding" && o.kind() != "ClusterRoleBinding" {
			continue
		}
		var b rbacv1.RoleBinding // the same shape as ClusterRoleBinding
		into(t, o, &b)
		roleNS := ""
		if b.RoleRef.Kind == "Role" {
			roleNS = o.namespace()
		}
		referenced[b.RoleRef.Kind+" "+roleNS+"/"+b.RoleRef.Name] = true
		scope := o.namespace()
		if o.kind() == "ClusterRoleBinding" {
			scope = "*"
		}
		rules := rulesOf(t, objs, o.namespace(), b.RoleRef)
		for _, s := range b.Subjects {
			subject := s.Kind + " " + s.Namespace + "/" + s.Name
			if s.Kind == "ServiceAccount" && s.Namespace == saNS && s.Name == saName {
				subject = "operator"
			}
			for a := range expand(rules) {
				g.bound[permission{subject, scope, a}] = true
			}
		}
	}
	for _, o := range objs {
		if (o.kind() != "Role" && o.kind() != "ClusterRole") || referenced[o.kind()+" "+o.namespace()+"/"+o.name()] {
			continue
		}
		var rules []rbacv1.PolicyRule
		into(t, o["rules"], &rules)
		var atoms []string
		for _, a := range normalize(rules) {
			atoms = append(atoms, fmt.Sprintf("%+v", a))
		}
		g.unbound = append(g.unbound, o.kind()+" in "+o.namespace()+aggregatesTo(o)+": "+strings.Join(atoms, ", "))
	}
	sort.Strings(g.unbound)
	return g
}

// aggregateLabel prefixes the labels by which Kubernetes' aggregation
// controller adds a ClusterRole's rules to a built-in role (view, edit,
// admin): for an unbound role, part of what it grants.
const aggregateLabel = "rbac.authorization.k8s.io/aggregate-to-"

// aggregatesTo names the built-in roles o joins, sorted, as " (joins a, b)";
// empty when it joins none.
func aggregatesTo(o object) string {
	labels, _ := get(o, "metadata", "labels").(map[string]any)
	var roles []string
	for k, v := range labels {
		if role, ok := strings.CutPrefix(k, aggregateLabel); ok && v == "true" {
			roles = append(roles, role)
		}
	}
	if len(roles) == 0 {
		return ""
	}
	sort.Strings(roles)
	return " (joins " + strings.Join(roles, ", ") + ")"
}

// TestKustomizeGrantsWhatTheChartGrants builds the kustomize install
// (kubectl kustomize) and renders the chart with the corresponding values,
// and fails on any difference in who may do what where. config/default runs
// the manager with --leader-elect (kubebuilder's default), which the chart
// does with leaderElection.enabled (or more than one replica): that value
// is set for the comparison; every other value is the chart's default but
// for the namespace the overlay adds.
func TestKustomizeGrantsWhatTheChartGrants(t *testing.T) {
	for _, c := range []struct {
		name   string
		dir    string
		values map[string]any
	}{
		{"default", "config/default", nil},
		{"one Rebuild namespace", "config/overlays/rebuild-namespace", map[string]any{"rebuild": map[string]any{"namespaces": []any{"team-a"}}}},
		{"one SCEPProfile namespace", "config/overlays/profile-namespace", map[string]any{"rbac": map[string]any{"secretNamespaces": []any{"team-a"}}}},
		{"profile editors", "config/overlays/profile-editors", map[string]any{"aggregatedRoles": map[string]any{"edit": true}}},
		{"CA distribution", "config/overlays/ca-bundle", map[string]any{"caDistribution": map[string]any{"enabled": true, "clusterTrustBundles": true}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			values := map[string]any{"leaderElection": map[string]any{"enabled": true}}
			for k, v := range c.values {
				values[k] = v
			}
			// helm test's objects exist only while `helm test` runs
			// (TestHelmTestHookGrantsOnlyReads); kustomize has no tests.
			chartObjs := withoutTestHooks(renderRelease(t, kustomizeRelease, kustomizeNS, values))
			kustObjs := kustomize(t, c.dir)

			// The premise: both run the manager in the same namespace, with
			// leader election and secure metrics.
			for name, objs := range map[string][]object{"the chart": chartObjs, c.dir: kustObjs} {
				if ns, _ := operatorAccount(t, objs); ns != kustomizeNS {
					t.Fatalf("%s runs the manager in namespace %s; want %s", name, ns, kustomizeNS)
				}
				args := managerArgs(t, find(objs, "Deployment")[0])
				for _, want := range []string{"--leader-elect", "--metrics-secure=true"} {
					if !slices.Contains(args, want) {
						t.Errorf("%s: manager args %q lack %s", name, args, want)
					}
				}
			}

			chart, kust := grantsOf(t, chartObjs), grantsOf(t, kustObjs)
			var onlyChart, onlyKust []string
			for p := range chart.bound {
				if !kust.bound[p] {
					onlyChart = append(onlyChart, p.String())
				}
			}
			for p := range kust.bound {
				if !chart.bound[p] {
					onlyKust = append(onlyKust, p.String())
				}
			}
			sort.Strings(onlyChart)
			sort.Strings(onlyKust)
			for _, p := range onlyChart {
				t.Errorf("only the chart grants: %s", p)
			}
			for _, p := range onlyKust {
				t.Errorf("only %s grants: %s", c.dir, p)
			}
			if !slices.Equal(chart.unbound, kust.unbound) {
				t.Errorf("unbound roles differ:\n chart     %q\n kustomize %q", chart.unbound, kust.unbound)
			}
			if len(chart.bound) == 0 {
				t.Fatal("the chart grants nothing")
			}

			// Neither grants Secrets cluster-wide, to anyone.
			for name, g := range map[string]grants{"the chart": chart, c.dir: kust} {
				for p := range g.bound {
					if p.scope == "*" && p.group != nonResourceURL && (p.resource == "secrets" || p.resource == "*") {
						t.Errorf("%s grants Secrets cluster-wide: %s", name, p)
					}
				}
			}
		})
	}
}

// isTestHook reports whether o is one of `helm test`'s hook objects.
func isTestHook(o object) bool {
	return str(o, "metadata", "annotations", "helm.sh/hook") == "test"
}

// withoutTestHooks drops `helm test`'s hook objects.
func withoutTestHooks(objs []object) []object {
	var out []object
	for _, o := range objs {
		if !isTestHook(o) {
			out = append(out, o)
		}
	}
	return out
}

// TestHelmTestHookGrantsOnlyReads: the helm test Pod's ServiceAccount may
// list profiles and scrape /metrics, nothing else; the hook's objects are
// deleted when the test passes; with test.enabled=false there are none.
func TestHelmTestHookGrantsOnlyReads(t *testing.T) {
	objs := render(t, nil)
	var hooks []object
	for _, o := range objs {
		if isTestHook(o) {
			hooks = append(hooks, o)
			if p := str(o, "metadata", "annotations", "helm.sh/hook-delete-policy"); p != "before-hook-creation,hook-succeeded" {
				t.Errorf("%s: hook-delete-policy %q", o.id(), p)
			}
		}
	}
	kinds := map[string]int{}
	for _, o := range hooks {
		kinds[o.kind()]++
	}
	if kinds["Pod"] != 1 || kinds["ServiceAccount"] != 1 || kinds["ClusterRole"] != 1 || kinds["ClusterRoleBinding"] != 1 || len(hooks) != 4 {
		t.Fatalf("helm test hooks: %v; want a Pod, a ServiceAccount, a ClusterRole and its binding", kinds)
	}
	var account object
	for _, o := range hooks {
		if o.kind() == "ServiceAccount" {
			account = o
		}
	}
	testSubject := "ServiceAccount " + account.namespace() + "/" + account.name()
	want := map[string]bool{"get": true, "list": true}
	n := 0
	for p := range grantsOf(t, objs).bound {
		if p.subject != testSubject {
			continue
		}
		n++
		if !want[p.verb] || (p.group != nonResourceURL && p.resource != "scepprofiles" && p.resource != "clusterscepprofiles") {
			t.Errorf("the helm test's ServiceAccount may do more than read: %s", p)
		}
	}
	if n != 3 {
		t.Errorf("helm test grants %d permissions, want 3 (list both profile kinds, get /metrics)", n)
	}
	for _, o := range render(t, map[string]any{"test": map[string]any{"enabled": false}}) {
		if isTestHook(o) {
			t.Errorf("test.enabled=false still renders %s", o.id())
		}
	}
}
