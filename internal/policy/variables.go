package policy

import (
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
)

// EmailAnnotation on a Certificate (cert-manager copies a Certificate's
// annotations to its CertificateRequests) gives %email% its value.
const EmailAnnotation = "scep.certificates.dev/email"

// VariablesFor maps each known variable to what is true of cr:
//
//	%namespace%        the request's namespace
//	%certificatename%  the Certificate that made the request (annotation
//	                   cert-manager.io/certificate-name), else the request's name
//	%requestname%      the CertificateRequest's name
//	%username%         the Kubernetes user that created the request
//	                   (spec.username: cert-manager's service account for
//	                   Certificates, a person for hand-made requests)
//	%email%            the Certificate's scep.certificates.dev/email annotation
//	%domainname%       the cluster's DNS domain (the manager's --cluster-domain)
//	%devicename%       <certificatename>.<namespace>: the workload's name in
//	                   the cluster, MDM's "device"
func VariablesFor(cr *cmapi.CertificateRequest, clusterDomain string) Variables {
	certName := cr.Annotations[cmapi.CertificateNameKey]
	if certName == "" {
		certName = cr.Name
	}
	return Variables{
		"namespace":       cr.Namespace,
		"certificatename": certName,
		"requestname":     cr.Name,
		"username":        cr.Spec.Username,
		"email":           cr.Annotations[EmailAnnotation],
		"domainname":      clusterDomain,
		"devicename":      certName + "." + cr.Namespace,
	}
}
