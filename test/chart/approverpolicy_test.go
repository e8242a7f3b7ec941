package chart_test

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestApproverPolicyExample checks approverPolicy: off by default; on, a
// CertificateRequestPolicy selecting this chart's issuers, a ClusterRole
// that grants "use" on that policy alone, bound to the subjects. Whether
// approver-policy approves and denies with it is test/approverpolicy's.
func TestApproverPolicyExample(t *testing.T) {
	if objs := find(render(t, nil), "CertificateRequestPolicy"); len(objs) != 0 {
		t.Errorf("the defaults render %d CertificateRequestPolicies; want none", len(objs))
	}
	objs := render(t, map[string]any{"approverPolicy": map[string]any{"enabled": true, "issuerRef": map[string]any{"kind": "*"}}})
	policy := findOne(t, objs, "CertificateRequestPolicy", "", fullname+"-scep")
	if g, k := str(policy, "spec", "selector", "issuerRef", "group"), str(policy, "spec", "selector", "issuerRef", "kind"); g != "scep.certificates.dev" || k != "*" {
		t.Errorf("the policy selects issuers of group %q kind %q; want scep.certificates.dev and *", g, k)
	}
	if get(policy, "spec", "allowed", "dnsNames") == nil {
		t.Error("the example policy allows no dnsNames")
	}
	role := findOne(t, objs, "ClusterRole", "", fullname+"-scep-use")
	var rules []rbacv1.PolicyRule
	into(t, role["rules"], &rules)
	want := atom{"policy.cert-manager.io", "certificaterequestpolicies", "use", fullname + "-scep"}
	if got := expand(rules); len(got) != 1 || !got[want] {
		t.Errorf("the use role grants %v; want only %+v", got, want)
	}
	binding := findOne(t, objs, "ClusterRoleBinding", "", fullname+"-scep-use")
	var b rbacv1.ClusterRoleBinding
	into(t, binding, &b)
	if b.RoleRef.Name != fullname+"-scep-use" || len(b.Subjects) != 1 || b.Subjects[0].Name != "cert-manager" || b.Subjects[0].Namespace != "cert-manager" {
		t.Errorf("the use binding is %+v; want cert-manager's ServiceAccount bound to the use role", b)
	}
	if _, err := templateErr(t, map[string]any{"approverPolicy": map[string]any{"enabled": true, "issuerRef": map[string]any{"kind": "Issuer"}}}); err == nil {
		t.Error("approverPolicy.issuerRef.kind=Issuer rendered; want the schema to refuse a kind that is not ours")
	}
}
