package profiles

import (
	"context"
	"crypto/x509"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// RootCAs returns the pool that trusts p's https url, as Client builds it,
// and the field it came from; nil and "" mean the system roots. scepctl
// doctor verifies the server's TLS chain with it step by step.
func (r *Registry) RootCAs(ctx context.Context, p scepv1alpha1.Profile) (*x509.CertPool, string, error) {
	bundle, field, err := r.caBundle(ctx, p, p.GetSpec().TLS, "spec.tls")
	if err != nil || bundle == nil {
		return nil, "", err
	}
	pool, err := poolOf(bundle, field)
	if err != nil {
		return nil, "", err
	}
	return pool, field, nil
}
