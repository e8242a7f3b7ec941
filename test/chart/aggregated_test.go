package chart_test

import (
	"reflect"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestAggregatedRoles checks the roles for people (aggregatedRoles): the
// viewer joins view, edit and admin and only reads; the editor joins edit
// and admin and writes SCEPProfiles only, never their status, never
// ClusterSCEPProfiles and never anything outside the API group; both name
// resources the chart's CRDs define. Agreement with config/rbac is
// TestKustomizeGrantsWhatTheChartGrants's (unbound roles and what they join).
func TestAggregatedRoles(t *testing.T) {
	// By default only the viewer: writing profiles is opt-in.
	for _, o := range find(render(t, nil), "ClusterRole") {
		if o.name() == fullname+"-profile-editor" {
			t.Errorf("the default renders %s: writing SCEPProfiles must be opt-in (aggregatedRoles.edit)", o.id())
		}
	}
	objs := render(t, map[string]any{"aggregatedRoles": map[string]any{"edit": true}})
	plurals := map[string]bool{}
	for _, c := range find(objs, "CustomResourceDefinition") {
		plurals[str(c, "spec", "group")+"/"+str(c, "spec", "names", "plural")] = true
	}
	for _, c := range []struct {
		name      string
		joins     string
		verbs     []string
		resources []string
	}{
		{fullname + "-profile-viewer", " (joins admin, edit, view)", []string{"get", "list", "watch"}, []string{"clusterscepprofiles", "scepprofiles"}},
		{fullname + "-profile-editor", " (joins admin, edit)", []string{"create", "delete", "deletecollection", "patch", "update"}, []string{"scepprofiles"}},
	} {
		role := findOne(t, objs, "ClusterRole", "", c.name)
		if got := aggregatesTo(role); got != c.joins {
			t.Errorf("%s%s; want%s", c.name, got, c.joins)
		}
		var rules []rbacv1.PolicyRule
		into(t, role["rules"], &rules)
		verbs, resources := map[string]bool{}, map[string]bool{}
		for a := range expand(rules) {
			if !plurals[a.group+"/"+a.resource] {
				t.Errorf("%s grants %s on %s/%s, which no CRD of the chart defines", c.name, a.verb, a.group, a.resource)
			}
			if a.name != "" {
				t.Errorf("%s limits %s to %q; want every object", c.name, a.resource, a.name)
			}
			verbs[a.verb], resources[a.resource] = true, true
		}
		if got := keys(verbs); !reflect.DeepEqual(got, c.verbs) {
			t.Errorf("%s verbs %v; want %v", c.name, got, c.verbs)
		}
		if got := keys(resources); !reflect.DeepEqual(got, c.resources) {
			t.Errorf("%s resources %v; want %v", c.name, got, c.resources)
		}
		// Bound to nobody: the aggregation controller copies the rules.
		for _, b := range append(find(objs, "ClusterRoleBinding"), find(objs, "RoleBinding")...) {
			if str(b, "roleRef", "name") == c.name {
				t.Errorf("%s binds %s; aggregated roles are bound through view/edit/admin only", b.id(), c.name)
			}
		}
	}

	for _, o := range find(render(t, map[string]any{"aggregatedRoles": map[string]any{"view": false, "edit": false}}), "ClusterRole") {
		if aggregatesTo(o) != "" {
			t.Errorf("aggregatedRoles.view=false, edit=false still renders %s%s", o.id(), aggregatesTo(o))
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
