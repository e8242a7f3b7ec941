package profiles

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

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

// readConfigMapKey reads one key of a ConfigMap a profile names in field
// (a krb5.conf, a CA bundle such as a trust-manager target), in namespace:
// the profile's Secret namespace, never one the profile chooses. A missing
// ConfigMap or key is a *SpecError naming field.
func (r *Registry) readConfigMapKey(ctx context.Context, namespace string, ref scepv1alpha1.ConfigMapKeySelector, defaultKey, field string) ([]byte, error) {
	key := cmp.Or(ref.Key, defaultKey)
	var cm corev1.ConfigMap
	if err := r.Reader.Get(ctx, objectKey(namespace, ref.Name), &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &SpecError{Field: field, Err: fmt.Errorf("ConfigMap %s/%s not found", namespace, ref.Name)}
		}
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, ref.Name, err)
	}
	v, ok := cm.Data[key]
	if !ok || strings.TrimSpace(v) == "" {
		return nil, &SpecError{Field: field, Err: fmt.Errorf("ConfigMap %s/%s has no key %q, or it is empty", namespace, ref.Name, key)}
	}
	return []byte(v), nil
}
