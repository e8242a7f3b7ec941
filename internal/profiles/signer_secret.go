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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

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

// ManagedBy is ManagedByLabel's value on the operator's Secrets.
const ManagedBy = "scep-operator"

// SignerForLabel on a signer Secret holds the UID of the profile the
// operator created it for. With a controller ownerReference to that UID it
// is what makes a Secret the operator's: a Secret of the same name without
// both is someone else's, and is never overwritten, patched or adopted.
const SignerForLabel = "scep.certificates.dev/signer-for"

// SignerSecretConflictError says that the Secret named for a profile's
// signer exists but is not one the operator created for that profile.
type SignerSecretConflictError struct {
	// Namespace and Name locate the Secret.
	Namespace, Name string
	// Why says what marks of the operator's own Secret it lacks.
	Why string
}

func (e *SignerSecretConflictError) Error() string {
	return fmt.Sprintf("Secret %s/%s, the name of this profile's signer Secret, already exists and was not created by scep-operator for this profile (%s); it is left untouched: delete or rename that Secret so the operator can create the signer, or rename the profile", e.Namespace, e.Name, e.Why)
}

// CheckSignerSecret returns a *SignerSecretConflictError unless s is the
// signer Secret the operator created for p: labelled SignerForLabel=p's UID
// and controlled (controller ownerReference) by p's UID.
func CheckSignerSecret(s *corev1.Secret, p scepv1alpha1.Profile) error {
	conflict := func(why string) error {
		return &SignerSecretConflictError{Namespace: s.Namespace, Name: s.Name, Why: why}
	}
	uid := string(p.GetUID())
	switch got, ok := s.Labels[SignerForLabel]; {
	case !ok:
		return conflict("no label " + SignerForLabel)
	case got != uid:
		// A profile deleted and created again under the same name has a new
		// UID; the old one's Secret goes with it (garbage collection).
		return conflict(fmt.Sprintf("label %s is %q, not this profile's UID %s: perhaps a deleted profile's, which garbage collection removes", SignerForLabel, got, uid))
	}
	ref := metav1.GetControllerOfNoCopy(s)
	if ref == nil || ref.UID != p.GetUID() {
		return conflict("no controller ownerReference to this profile")
	}
	return nil
}

// IsLegacySignerSecret reports whether s is a signer Secret an operator
// from before SignerForLabel created for p: labelled ManagedByLabel, and
// controlled by p's UID (SCEPProfile) or, for a ClusterSCEPProfile (whose
// Secret had no owner), without any ownerReference and holding the
// certificate NewSignerSecretData makes for p. Such a Secret is the
// operator's own and is labelled and owned on the next check, so an
// upgrade keeps each profile's signer key (and its PENDING transactions).
func IsLegacySignerSecret(s *corev1.Secret, p scepv1alpha1.Profile) bool {
	if s.Labels[ManagedByLabel] != ManagedBy || s.Labels[SignerForLabel] != "" {
		return false
	}
	if p.GetNamespace() != "" {
		ref := metav1.GetControllerOfNoCopy(s)
		return ref != nil && ref.UID == p.GetUID()
	}
	if len(s.OwnerReferences) > 0 {
		return false
	}
	sg, err := ParseSigner(s.Data)
	return err == nil && sg.Certificate.Subject.CommonName == signerCommonName(p)
}

// MarkSignerSecret labels s as p's signer Secret and makes p its
// controller, so that it is garbage-collected with p. Deletion of p is not
// blocked by it (blockOwnerDeletion would need the right to update p's
// finalizers).
func MarkSignerSecret(s *corev1.Secret, p scepv1alpha1.Profile, scheme *runtime.Scheme) error {
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels[ManagedByLabel] = ManagedBy
	s.Labels[SignerForLabel] = string(p.GetUID())
	return controllerutil.SetControllerReference(p, s, scheme, controllerutil.WithBlockOwnerDeletion(false))
}

func signerCommonName(p scepv1alpha1.Profile) string {
	return "scep-operator " + KeyOf(p).String()
}

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
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: signerCommonName(p), Organization: []string{"scep-operator"}},
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
// SignerCacheTTL ago. The result is shared: do not modify it. A Secret of
// that name that the operator did not create for p is never used: the
// error is a *SignerSecretConflictError and p's controller is asked to
// check p again, so that its Ready condition says so.
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
	if err := CheckSignerSecret(&s, p); err != nil {
		r.Recheck(p)
		return nil, err
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
