package chart_test

import (
	"slices"
	"strings"
	"testing"
)

// TestCADistribution: off by default (no flag, ConfigMaps only read);
// on, the manager gets the trust namespace (and, asked for, namespaced
// profiles) and may write ConfigMaps in that namespace only.
func TestCADistribution(t *testing.T) {
	// configMapVerbs: scope -> the verbs on ConfigMaps granted there.
	configMapVerbs := func(objs []object) map[string][]string {
		out := map[string][]string{}
		for key, rules := range boundRules(t, objs, releaseNS, fullname) {
			scope := strings.Fields(key)[0]
			for a := range expand(rules) {
				if a.resource == "configmaps" && !slices.Contains(out[scope], a.verb) {
					out[scope] = append(out[scope], a.verb)
				}
			}
		}
		for _, verbs := range out {
			slices.Sort(verbs)
		}
		return out
	}
	onlyReads := func(name string, grants map[string][]string, except string) {
		for scope, verbs := range grants {
			if scope != except && !slices.Equal(verbs, []string{"get"}) {
				t.Errorf("%s: ConfigMaps %v granted in %s; want get only", name, verbs, scope)
			}
		}
	}

	objs := render(t, nil)
	for _, a := range managerArgs(t, findOne(t, objs, "Deployment", releaseNS, fullname)) {
		if strings.HasPrefix(a, "--ca-bundle") {
			t.Errorf("default: manager arg %s", a)
		}
	}
	onlyReads("default", configMapVerbs(objs), "")

	objs = render(t, map[string]any{"caDistribution": map[string]any{"enabled": true, "namespace": "trust", "namespacedProfiles": true}})
	args := managerArgs(t, findOne(t, objs, "Deployment", releaseNS, fullname))
	for _, want := range []string{"--ca-bundle-namespace=trust", "--ca-bundle-namespaced-profiles"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %v lack %s", args, want)
		}
	}
	grants := configMapVerbs(objs)
	if want := []string{"create", "delete", "get", "list", "update"}; !slices.Equal(grants["trust"], want) {
		t.Errorf("ConfigMaps in the trust namespace: %v, want %v", grants["trust"], want)
	}
	onlyReads("enabled", grants, "trust")
	if got := clusterTrustBundleGrants(t, objs); len(got) != 0 {
		t.Errorf("without clusterTrustBundles: %v", got)
	}

	objs = render(t, map[string]any{"caDistribution": map[string]any{"clusterTrustBundles": true}})
	if args := managerArgs(t, findOne(t, objs, "Deployment", releaseNS, fullname)); !slices.Contains(args, "--cluster-trust-bundles") {
		t.Errorf("args %v lack --cluster-trust-bundles", args)
	}
	want := []string{
		"* attest signers clusterscepprofiles.scep.certificates.dev/*",
		"* create clustertrustbundles ", "* delete clustertrustbundles ", "* get clustertrustbundles ",
		"* list clustertrustbundles ", "* update clustertrustbundles ",
	}
	if got := clusterTrustBundleGrants(t, objs); !slices.Equal(got, want) {
		t.Errorf("ClusterTrustBundle grants = %q, want %q", got, want)
	}
}

// clusterTrustBundleGrants lists, sorted, "scope verb resource name" for
// what the operator may do with ClusterTrustBundles, and attest on signers
// (CSRs, and sign on signers, are another feature's).
func clusterTrustBundleGrants(t *testing.T, objs []object) []string {
	t.Helper()
	var out []string
	for key, rules := range boundRules(t, objs, releaseNS, fullname) {
		scope := strings.Fields(key)[0]
		for a := range expand(rules) {
			if a.group == "certificates.k8s.io" && (a.resource == "clustertrustbundles" || a.verb == "attest") {
				out = append(out, scope+" "+a.verb+" "+a.resource+" "+a.name)
			}
		}
	}
	slices.Sort(out)
	return out
}
