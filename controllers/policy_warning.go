package controllers

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/policy"
)

// ConditionPolicyWarning is True on a profile that leaves something a
// tenant chooses unconstrained (any subject, any names, any namespace),
// with the list in its message; False when the profile constrains all.
const ConditionPolicyWarning = "PolicyWarning"

// Reasons of ConditionPolicyWarning, and the Event of a new warning.
const (
	ReasonUnconstrained = "Unconstrained"
	ReasonConstrained   = "Constrained"
)

// checkPolicySpec refuses what the CRD's rules refuse today but a profile
// stored before them may still hold: an unconstrained subject that is not
// explicit, a namespace selector that does not parse or sits on a
// namespaced profile.
func checkPolicySpec(p scepv1alpha1.Profile) error {
	spec := p.GetSpec()
	if spec.Subject == "" && !spec.AllowAnySubject {
		return errors.New("spec.subject is empty: set subject to a DN template requests must match (e.g. CN=%certificatename%.%namespace%,O=Corp), or allowAnySubject: true to accept any subject; an unconstrained subject must be explicit since this release (nothing is enrolled until then)")
	}
	if spec.NamespaceSelector != nil {
		if _, ok := p.(*scepv1alpha1.SCEPProfile); ok {
			return errors.New("spec.namespaceSelector is for ClusterSCEPProfile; a SCEPProfile serves only its own namespace: remove it")
		}
		if _, err := metav1.LabelSelectorAsSelector(spec.NamespaceSelector); err != nil {
			return fmt.Errorf("spec.namespaceSelector: %w", err)
		}
	}
	return nil
}

// policyWarnings lists what p leaves to the tenant: what policy.Warnings
// finds in its spec (any subject, any names, an unconstrained %email%,
// identity templates any namespace can fill), and any namespace for a
// ClusterSCEPProfile without namespaceSelector.
func policyWarnings(p scepv1alpha1.Profile) []string {
	spec := p.GetSpec()
	w := policy.Warnings(spec)
	if _, cluster := p.(*scepv1alpha1.ClusterSCEPProfile); cluster && spec.NamespaceSelector == nil {
		w = append(w, "no namespaceSelector: every namespace may use this ClusterSCEPProfile")
	}
	return w
}

// setPolicyWarning writes the PolicyWarning condition and, when it turns
// True or its list changes, a Warning Event.
func (r *ProfileReconciler) setPolicyWarning(p scepv1alpha1.Profile) {
	status := p.GetStatus()
	prev := meta.FindStatusCondition(status.Conditions, ConditionPolicyWarning)
	cond := metav1.Condition{Type: ConditionPolicyWarning, ObservedGeneration: p.GetGeneration(),
		Status: metav1.ConditionFalse, Reason: ReasonConstrained, Message: "the profile constrains subject, names and namespaces"}
	if w := policyWarnings(p); len(w) > 0 {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, ReasonUnconstrained, "the profile leaves to the requester: "+strings.Join(w, "; ")
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	if cond.Status == metav1.ConditionTrue && (prev == nil || prev.Message != cond.Message) {
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, ReasonUnconstrained, "Check", "%s", cond.Message)
	}
}
