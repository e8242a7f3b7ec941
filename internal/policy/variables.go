package policy

import (
	"fmt"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// Variables maps a variable's name (without the percent signs) to its value
// for one request; a variable without a value is absent (or empty). See
// Known for the names and the package doc for who chooses each value.
type Variables map[string]string

// Known lists the variables a template may use, in the order the docs list
// them. The API schema refuses any other.
var Known = []string{"namespace", "certificatename", "requestname", "username", "email", "domainname", "devicename"}

// EmailAnnotation on a Certificate (cert-manager copies a Certificate's
// annotations to its CertificateRequests) gives %email% its value. The
// tenant writes it: spec.variables.email constrains it.
const EmailAnnotation = "scep.certificates.dev/email"

// VariablesFor maps each known variable to what is true of cr (see the
// package doc for who controls each):
//
//	%namespace%        the request's namespace
//	%certificatename%  the Certificate that owns the request (CertificateOwner);
//	                   no value for a request without one
//	%requestname%      the CertificateRequest's name
//	%username%         spec.username of the request
//	%email%            the annotation scep.certificates.dev/email
//	%domainname%       the cluster's DNS domain (the manager's --cluster-domain)
//	%devicename%       <certificatename>.<namespace>: the workload's name in
//	                   the cluster, MDM's "device"; no value without an owner
//
// The cert-manager.io/certificate-name annotation is never read: anyone
// who can create a request can write it.
func VariablesFor(cr *cmapi.CertificateRequest, clusterDomain string) Variables {
	vars := Variables{
		"namespace":   cr.Namespace,
		"requestname": cr.Name,
		"domainname":  clusterDomain,
	}
	if cr.Spec.Username != "" {
		vars["username"] = cr.Spec.Username
	}
	if email := cr.Annotations[EmailAnnotation]; email != "" {
		vars["email"] = email
	}
	if name, _, ok := CertificateOwner(cr); ok {
		vars["certificatename"] = name
		vars["devicename"] = name + "." + cr.Namespace
	}
	return vars
}

// CertificateOwner returns the cert-manager Certificate that owns cr: its
// controller ownerReference, when that is of kind Certificate in the group
// cert-manager.io and names a valid Certificate name (a DNS-1123
// subdomain) with a UID. The reference is what the request says: a tenant
// can write it on a request it makes by hand, so a caller that reads the
// Certificate (csrMode Rebuild) must check that its UID is uid.
func CertificateOwner(cr *cmapi.CertificateRequest) (name string, uid types.UID, ok bool) {
	controllers := 0
	for _, ref := range cr.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		controllers++
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil || gv.Group != cmapi.SchemeGroupVersion.Group || ref.Kind != cmapi.CertificateKind {
			continue
		}
		if len(validation.IsDNS1123Subdomain(ref.Name)) > 0 || ref.UID == "" {
			continue
		}
		name, uid, ok = ref.Name, ref.UID, true
	}
	// The API server allows one controller; anything else is not a request
	// cert-manager made.
	if controllers != 1 {
		return "", "", false
	}
	return name, uid, ok
}

// checkEmail holds %email% against spec.variables.email when the request
// gives it a value.
func checkEmail(spec *scepv1alpha1.SCEPProfileSpec, vars Variables) *Violation {
	email := vars["email"]
	if email == "" || spec.Variables == nil || len(spec.Variables.Email) == 0 {
		return nil
	}
	// Only these expand in an email constraint (the API refuses others).
	scope := Variables{}
	for _, n := range []string{"namespace", "certificatename", "domainname"} {
		if v, ok := vars[n]; ok {
			scope[n] = v
		}
	}
	var descs, unbound []string
	for i, c := range spec.Variables.Email {
		t := parseTemplate(c)
		descs = append(descs, t.describe(scope))
		p, err := t.bind(scope, true)
		if err != nil {
			unbound = append(unbound, fmt.Sprintf("spec.variables.email[%d] cannot apply: %v", i, err))
			continue
		}
		if p.match(email) {
			return nil
		}
	}
	msg := fmt.Sprintf("%%email%% is %s (annotation %s), which matches none of %s: set the annotation to an allowed address", quote(email), EmailAnnotation, capped(strings.Join(descs, ", ")))
	if len(unbound) > 0 {
		msg += "; " + strings.Join(unbound, "; ")
	}
	return violation("spec.variables.email", "%s", msg)
}
