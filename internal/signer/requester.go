package signer

import (
	"context"

	authzv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// subjectMay asks the API server, by a SubjectAccessReview, whether the
// requester of csr may do what attrs says. The requester is what the API
// server recorded when the CSR was created (spec.username, groups, uid,
// extra), which nobody can change afterwards, as cert-manager's CSR
// signers ask it (pkg/controller/certificatesigningrequests, "reference").
func subjectMay(ctx context.Context, c client.Client, csr *certificatesv1.CertificateSigningRequest, attrs authzv1.ResourceAttributes) (bool, error) {
	extra := make(map[string]authzv1.ExtraValue, len(csr.Spec.Extra))
	for k, v := range csr.Spec.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User:               csr.Spec.Username,
		Groups:             csr.Spec.Groups,
		UID:                csr.Spec.UID,
		Extra:              extra,
		ResourceAttributes: &attrs,
	}}
	if err := c.Create(ctx, sar); err != nil {
		return false, err
	}
	return sar.Status.Allowed, nil
}
