package chart_test

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestCertificateSigningRequestsOff: certificateSigningRequests.enabled=false
// drops every permission on CSRs, signers and SubjectAccessReviews from the
// operator's ClusterRole and tells the manager not to serve CSRs; by default
// both are there.
func TestCertificateSigningRequestsOff(t *testing.T) {
	csrRules := func(objs []object) int {
		var rules []rbacv1.PolicyRule
		into(t, findOne(t, objs, "ClusterRole", "", fullname)["rules"], &rules)
		n := 0
		for _, r := range rules {
			if slices.Contains(r.APIGroups, "certificates.k8s.io") || slices.Contains(r.APIGroups, "authorization.k8s.io") {
				n++
			}
		}
		return n
	}
	const off = "--serve-certificate-signing-requests=false"
	on := render(t, nil)
	if n := csrRules(on); n != 4 {
		t.Errorf("default: %d rules on CSRs, signers and SubjectAccessReviews; want 4", n)
	}
	if slices.Contains(managerArgs(t, find(on, "Deployment")[0]), off) {
		t.Errorf("default: the manager is told %s", off)
	}
	disabled := render(t, map[string]any{"certificateSigningRequests": map[string]any{"enabled": false}})
	if n := csrRules(disabled); n != 0 {
		t.Errorf("certificateSigningRequests.enabled=false: %d rules on CSRs, signers and SubjectAccessReviews remain", n)
	}
	if !slices.Contains(managerArgs(t, find(disabled, "Deployment")[0]), off) {
		t.Errorf("certificateSigningRequests.enabled=false: the manager is not told %s", off)
	}
}
