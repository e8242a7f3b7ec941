package signer

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// StateKeySecretKey is the key of the state-key Secret that holds the HMAC key.
const StateKeySecretKey = "hmac-key"

// stateKeyLength is the HMAC-SHA256 key length.
const stateKeyLength = 32

// LoadStateKey returns the key that seals request state: it reads the
// Secret namespace/name, or creates it with a random key when it does not
// exist (replicas racing to create it all end up reading the winner's).
// The Secret lives in the operator's namespace, which tenants cannot read
// or write; its key never appears in logs, Events or status.
func LoadStateKey(ctx context.Context, reader client.Reader, writer client.Client, namespace, name string) ([]byte, error) {
	for range 3 {
		var sec corev1.Secret
		err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sec)
		switch {
		case err == nil:
			key := sec.Data[StateKeySecretKey]
			if len(key) < stateKeyLength {
				return nil, fmt.Errorf("secret %s/%s holds no %d-byte %q: delete it and the operator makes a new one (requests in flight then restart their backoff)", namespace, name, stateKeyLength, StateKeySecretKey)
			}
			return key, nil
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("reading the request-state key Secret %s/%s: %w", namespace, name, err)
		}
		key := make([]byte, stateKeyLength)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		sec = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: namespace, Name: name,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "scep-operator", "scep.certificates.dev/role": "state-key"},
			},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{StateKeySecretKey: key},
		}
		err = writer.Create(ctx, &sec)
		switch {
		case err == nil:
			return key, nil
		case !apierrors.IsAlreadyExists(err):
			return nil, fmt.Errorf("creating the request-state key Secret %s/%s: %w", namespace, name, err)
		}
	}
	return nil, fmt.Errorf("the request-state key Secret %s/%s keeps appearing and disappearing", namespace, name)
}

// stateKey returns the sealing key, a random one for this process if none
// was given.
func (s *Signer) stateKey() []byte {
	s.stateKeyOnce.Do(func() {
		if len(s.StateKey) == 0 {
			s.StateKey = make([]byte, stateKeyLength)
			_, _ = rand.Read(s.StateKey) // crypto/rand.Read never fails (Go 1.24+)
		}
	})
	return s.StateKey
}
