package profiles

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	corev1 "k8s.io/api/core/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// Lifetimes of the Passthrough signer: a year, renewed a month before the
// end, so a PENDING transaction signed with it can still be polled.
const (
	SignerValidity    = 365 * 24 * time.Hour
	SignerRenewBefore = 30 * 24 * time.Hour
)

// ManagedByLabel marks the Secrets the operator creates.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// SignerSecretName names the Secret holding p's Passthrough signer.
func SignerSecretName(p scepv1alpha1.Profile) string {
	if p.GetNamespace() == "" {
		return "clusterscepprofile-" + p.GetName() + "-scep-signer"
	}
	return p.GetName() + "-scep-signer"
}

// NeedsSigner reports whether p's requests may be signed by the profile's
// own RSA key: Passthrough, or Rebuild with ECDSA workload keys allowed.
func NeedsSigner(spec *scepv1alpha1.SCEPProfileSpec) bool {
	return spec.CSRMode != scepv1alpha1.CSRModeRebuild || spec.AllowECDSAKeys
}

// NewSignerSecretData makes a fresh RSA-2048 key and a self-signed
// certificate naming p, as the data of a kubernetes.io/tls Secret.
func NewSignerSecretData(p scepv1alpha1.Profile, now time.Time) (map[string][]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	k := KeyOf(p)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "scep-operator " + k.String(), Organization: []string{"scep-operator"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(SignerValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
	}, nil
}

// ParseSigner reads a signer Secret's data.
func ParseSigner(data map[string][]byte) (*scep.Signer, error) {
	cb, _ := pem.Decode(data[corev1.TLSCertKey])
	kb, _ := pem.Decode(data[corev1.TLSPrivateKeyKey])
	if cb == nil || kb == nil {
		return nil, errors.New("signer Secret lacks a PEM tls.crt or tls.key")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signer certificate: %w", err)
	}
	key, err := x509.ParsePKCS1PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signer key: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("signer key does not match its certificate")
	}
	return &scep.Signer{Certificate: cert, Key: key}, nil
}

// SignerCacheTTL is how long LoadSigner reuses a parsed signer without
// reading its Secret again. Reading and parsing it (an uncached GET, and an
// RSA key whose parsing runs a consistency check as costly as a signature)
// was a fifth of the operator's CPU per Passthrough enrollment. The profile
// controller forgets the signer when it creates or renews it; the TTL covers
// a Secret changed by hand.
const SignerCacheTTL = time.Minute

type signerEntry struct {
	signer *scep.Signer
	loaded time.Time
}

// LoadSigner returns p's Passthrough signer, read from its Secret at most
// SignerCacheTTL ago. The result is shared: do not modify it.
func (r *Registry) LoadSigner(ctx context.Context, p scepv1alpha1.Profile) (*scep.Signer, error) {
	key := KeyOf(p)
	r.mu.Lock()
	se := r.signers[key]
	r.mu.Unlock()
	if se != nil && time.Since(se.loaded) < SignerCacheTTL {
		return se.signer, nil
	}
	var s corev1.Secret
	ns, name := r.SecretNamespace(p), SignerSecretName(p)
	if err := r.Reader.Get(ctx, objectKey(ns, name), &s); err != nil {
		return nil, fmt.Errorf("reading the profile's signer Secret %s/%s (the profile controller creates it): %w", ns, name, err)
	}
	sg, err := ParseSigner(s.Data)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.signers == nil {
		r.signers = map[Key]*signerEntry{}
	}
	r.signers[key] = &signerEntry{signer: sg, loaded: time.Now()}
	r.mu.Unlock()
	return sg, nil
}

// ForgetSigner drops the signer LoadSigner cached for key, so the next call
// reads its Secret.
func (r *Registry) ForgetSigner(key Key) {
	r.mu.Lock()
	delete(r.signers, key)
	r.mu.Unlock()
}
