// Package profiles turns SCEPProfile and ClusterSCEPProfile specs into SCEP
// clients, and remembers per profile what the server last said (capabilities,
// pinned CA and RA certificates), so that a steady enrollment costs one
// PKIOperation round trip. The profile controller refreshes the cache; the
// signer reads it.
package profiles

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// Key identifies a profile across both kinds.
type Key struct {
	// Kind is SCEPProfile or ClusterSCEPProfile.
	Kind string
	// Namespace is empty for a ClusterSCEPProfile.
	Namespace string
	// Name is the profile's name.
	Name string
}

// String reads like "SCEPProfile shop/ndes" or "ClusterSCEPProfile corp".
func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + " " + k.Name
	}
	return k.Kind + " " + k.Namespace + "/" + k.Name
}

// KeyOf returns p's key.
func KeyOf(p scepv1alpha1.Profile) Key {
	kind := "SCEPProfile"
	if _, ok := p.(*scepv1alpha1.ClusterSCEPProfile); ok {
		kind = "ClusterSCEPProfile"
	}
	return Key{Kind: kind, Namespace: p.GetNamespace(), Name: p.GetName()}
}

// Registry builds and caches one SCEP client per profile.
type Registry struct {
	// Reader reads Secrets; an uncached reader needs only "get" on Secrets.
	Reader client.Reader
	// ClusterResourceNamespace holds the Secrets of ClusterSCEPProfiles.
	ClusterResourceNamespace string
	// Logger receives the clients' debug lines and TLS warnings.
	Logger logr.Logger
	// Observe, when set, is called after every HTTP round trip to a server.
	Observe func(key Key, op string, status int, d time.Duration)
	// Timeout bounds each HTTP round trip to a SCEP server; zero means
	// scepclient.DefaultTimeout.
	Timeout time.Duration
	// Egress is where profiles' servers (SCEP URLs and NDES admin pages)
	// may be; nil means egress.Default().
	Egress *egress.Policy
	// MaxSilence is how long a profile's server may leave the requests
	// Admit let through without any answer before the profile's other
	// requests are held back; zero means DefaultMaxSilence, or half of
	// Timeout if that is less.
	MaxSilence time.Duration
	// Clock is the time source of the breakers; nil means the real clock.
	Clock clock.Clock

	mu      sync.Mutex
	entries map[serverKey]*entry
	health  map[serverKey]*serverHealth
	servers map[Key][]string // each profile's servers, as last seen
	signers map[Key]*signerEntry
	dyn     dynamicState
	brk     breakers
}

type entry struct {
	client  *scepclient.Client
	version string // generation and trust material the client was built from
	info    *scepclient.ServerInfo
}

// SecretNamespace is where p's Secrets live: its own namespace, or the
// cluster resource namespace for a ClusterSCEPProfile.
func (r *Registry) SecretNamespace(p scepv1alpha1.Profile) string {
	if p.GetNamespace() == "" {
		return r.ClusterResourceNamespace
	}
	return p.GetNamespace()
}

// SecretError says a Secret or one of its keys that a profile names is missing.
type SecretError struct {
	// Namespace, Name and Key locate the value.
	Namespace, Name, Key string
	// NotFound is true when the Secret itself is missing.
	NotFound bool
	// Empty is true when the key is there with an empty value.
	Empty bool
	// Keys are the keys the Secret has (names only), to tell a typo.
	Keys []string
}

func (e *SecretError) Error() string {
	switch {
	case e.NotFound:
		return fmt.Sprintf("Secret %s/%s not found", e.Namespace, e.Name)
	case e.Empty:
		return fmt.Sprintf("Secret %s/%s has an empty %q", e.Namespace, e.Name, e.Key)
	case len(e.Keys) == 0:
		return fmt.Sprintf("Secret %s/%s has no key %q (it has no keys)", e.Namespace, e.Name, e.Key)
	}
	return fmt.Sprintf("Secret %s/%s has no key %q (it has %s)", e.Namespace, e.Name, e.Key, strings.Join(e.Keys, ", "))
}

// ReadSecretKey returns one value of a Secret in namespace; ref.Key empty
// means defaultKey.
func (r *Registry) ReadSecretKey(ctx context.Context, namespace string, ref scepv1alpha1.SecretKeySelector, defaultKey string) ([]byte, error) {
	key := ref.Key
	if key == "" {
		key = defaultKey
	}
	var s corev1.Secret
	if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &SecretError{Namespace: namespace, Name: ref.Name, Key: key, NotFound: true}
		}
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, ref.Name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		keys := slices.Sorted(maps.Keys(s.Data))
		return nil, &SecretError{Namespace: namespace, Name: ref.Name, Key: key, Empty: ok, Keys: keys}
	}
	return v, nil
}

// SpecError is a profile field the API schema could not refuse but the
// operator cannot use (e.g. a CA bundle that holds no certificate).
type SpecError struct {
	// Field is the spec field, e.g. "spec.tls.caBundle".
	Field string
	// Err says what is wrong.
	Err error
}

func (e *SpecError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the detail.
func (e *SpecError) Unwrap() error { return e.Err }

// CheckTransport refuses what the API's validation refuses on new
// objects about how secrets travel, for objects stored before those rules
// existed: a Static or Dynamic challenge over an http:// url without
// caFingerprint (the password would be encrypted to whoever answers
// GetCACert) unless challenge.allowUnpinnedHTTP, and an http:// NDES admin
// url unless challenge.dynamic.allowPlainHTTP.
func CheckTransport(spec *scepv1alpha1.SCEPProfileSpec) error {
	ch := spec.Challenge
	if ch.Type != scepv1alpha1.ChallengeStatic && ch.Type != scepv1alpha1.ChallengeDynamic {
		return nil
	}
	if isPlainHTTP(spec.URL) && !Pinned(spec) && !ch.AllowUnpinnedHTTP {
		return &SpecError{Field: "spec.caFingerprint", Err: fmt.Errorf("a %s challenge over an http:// url needs caFingerprint: without a pin the challenge password is encrypted to whoever answers GetCACert; set caFingerprint (or challenge.allowUnpinnedHTTP: true to accept that risk)", ch.Type)}
	}
	if d := ch.Dynamic; ch.Type == scepv1alpha1.ChallengeDynamic && d != nil && isPlainHTTP(d.URL) && !d.AllowPlainHTTP {
		return &SpecError{Field: "spec.challenge.dynamic.url", Err: errors.New("the NDES admin page over http:// exposes its credentials (NTLM can be relayed to AD CS, Basic is plain text): use an https:// url (with dynamic.tls for its trust), or set dynamic.allowPlainHTTP: true to accept that risk")}
	}
	return nil
}

func isPlainHTTP(u string) bool {
	scheme, _, ok := strings.Cut(strings.TrimSpace(u), "://")
	return ok && strings.EqualFold(scheme, "http")
}

// Client returns the SCEP client for p's url, building a new one when the
// spec or its trust material changed. A spec that CheckTransport refuses
// gets no client.
func (r *Registry) Client(ctx context.Context, p scepv1alpha1.Profile) (*scepclient.Client, error) {
	return r.ClientFor(ctx, p, p.GetSpec().URL)
}

// ClientFor is Client for one of p's servers (Servers): url or a
// failoverURLs entry. Any other URL is refused.
func (r *Registry) ClientFor(ctx context.Context, p scepv1alpha1.Profile, server string) (*scepclient.Client, error) {
	spec := p.GetSpec()
	if err := CheckTransport(spec); err != nil {
		return nil, err
	}
	if !slices.Contains(Servers(spec), server) {
		return nil, &SpecError{Field: "spec.failoverURLs", Err: fmt.Errorf("%s is not one of the profile's servers", server)}
	}
	cfg := scepclient.Config{URL: server, CAIdentifier: spec.CAIdentifier, Timeout: r.Timeout, Egress: r.Egress, Logger: r.Logger.WithValues("profile", KeyOf(p).String(), "server", server), Floor: floorOf(spec)}
	version := fmt.Sprintf("%d", p.GetGeneration())
	if spec.TLS != nil {
		cfg.InsecureSkipVerify = spec.TLS.InsecureSkipVerify
		bundle, field, err := r.caBundle(ctx, p, spec.TLS, "spec.tls")
		if err != nil {
			return nil, err
		}
		if bundle != nil {
			if cfg.RootCAs, err = poolOf(bundle, field); err != nil {
				return nil, err
			}
			sum := sha256.Sum256(bundle)
			version += fmt.Sprintf("/%x", sum[:8])
		}
	}
	key := KeyOf(p)
	sk := serverKey{Key: key, URL: server}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.servers == nil {
		r.servers = map[Key][]string{}
	}
	r.servers[key] = Servers(spec)
	if e, ok := r.entries[sk]; ok && e.version == version {
		return e.client, nil
	}
	cfg.Observe = func(op string, status int, d time.Duration) {
		// Status 0: no HTTP answer came (timeout, connection refused or lost).
		r.observeServer(sk, status)
		// The breaker holds a profile's requests while no server of it
		// answers: a silent server beside one that answers only moves
		// requests on (ServerOrder).
		if answered := status != 0; answered || !r.anotherServerUp(sk) {
			r.observeRoundTrip(key, answered)
		}
		if r.Observe != nil {
			r.Observe(key, op, status, d)
		}
	}
	c, err := scepclient.New(cfg)
	if err != nil {
		field := "spec.url"
		if server != spec.URL {
			field = "spec.failoverURLs"
		}
		return nil, &SpecError{Field: field, Err: err}
	}
	if r.entries == nil {
		r.entries = map[serverKey]*entry{}
	}
	r.entries[sk] = &entry{client: c, version: version}
	return c, nil
}

// Discover asks p's server (url) for its capabilities and certificates,
// applies the pins, and caches the answer for ServerInfo.
func (r *Registry) Discover(ctx context.Context, p scepv1alpha1.Profile) (*scepclient.ServerInfo, error) {
	return r.DiscoverServer(ctx, p, p.GetSpec().URL)
}

// DiscoverServer is Discover for one of p's servers.
func (r *Registry) DiscoverServer(ctx context.Context, p scepv1alpha1.Profile, server string) (*scepclient.ServerInfo, error) {
	c, err := r.ClientFor(ctx, p, server)
	if err != nil {
		return nil, err
	}
	pins, err := TrustedPins(p)
	if err != nil {
		return nil, err
	}
	if _, err := c.RefreshCACaps(ctx); err != nil {
		return nil, refusedIsSpec(err)
	}
	info, err := c.DiscoverWith(ctx, scepclient.DiscoverOptions{Pins: pins, Now: r.now()})
	if err != nil {
		return nil, refusedIsSpec(err)
	}
	r.mu.Lock()
	if e, ok := r.entries[serverKey{Key: KeyOf(p), URL: server}]; ok && e.client == c {
		e.info = info
	}
	r.mu.Unlock()
	return info, nil
}

// refusedIsSpec makes a destination the egress policy refuses (found when
// the url's name resolved) a fault of the profile's url, as it is when the
// url holds the address itself.
func refusedIsSpec(err error) error {
	if egress.IsRefused(err) {
		return &SpecError{Field: "spec.url", Err: err}
	}
	return err
}

// ServerInfo returns the cached answer for p's current client, discovering
// it when there is none (first use, spec change, operator restart).
func (r *Registry) ServerInfo(ctx context.Context, p scepv1alpha1.Profile) (*scepclient.Client, *scepclient.ServerInfo, error) {
	return r.ServerInfoFor(ctx, p, p.GetSpec().URL)
}

// ServerInfoFor is ServerInfo for one of p's servers.
func (r *Registry) ServerInfoFor(ctx context.Context, p scepv1alpha1.Profile, server string) (*scepclient.Client, *scepclient.ServerInfo, error) {
	c, err := r.ClientFor(ctx, p, server)
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	var info *scepclient.ServerInfo
	if e, ok := r.entries[serverKey{Key: KeyOf(p), URL: server}]; ok && e.client == c {
		info = e.info
	}
	r.mu.Unlock()
	if info != nil {
		return c, info, nil
	}
	info, err = r.DiscoverServer(ctx, p, server)
	return c, info, err
}

// Forget drops what is cached for key's servers (a deleted profile, or a
// reply that suggests the server's certificates changed).
func (r *Registry) Forget(key Key) {
	r.mu.Lock()
	for sk := range r.entries {
		if sk.Key == key {
			delete(r.entries, sk)
		}
	}
	for sk := range r.health {
		if sk.Key == key {
			delete(r.health, sk)
		}
	}
	delete(r.signers, key)
	delete(r.servers, key)
	r.mu.Unlock()
}

// ForgetProfile drops everything kept for a deleted profile: what Forget
// drops and its circuit breaker, which Forget keeps because a server whose
// certificates changed is still the same server, as healthy or not as
// before. A request of the profile still in flight releases its admission
// on the dropped breaker; a profile created again under the name starts
// with a closed one.
func (r *Registry) ForgetProfile(key Key) {
	r.Forget(key)
	r.brk.mu.Lock()
	delete(r.brk.byKey, key)
	r.brk.mu.Unlock()
}

func objectKey(namespace, name string) client.ObjectKey {
	return client.ObjectKey{Namespace: namespace, Name: name}
}

// caBundle returns the PEM CA bundle of tls (a TLSConfig of p at field,
// e.g. "spec.tls") and the field it came from, nil when the system roots
// apply.
func (r *Registry) caBundle(ctx context.Context, p scepv1alpha1.Profile, tls *scepv1alpha1.TLSConfig, field string) ([]byte, string, error) {
	switch {
	case tls == nil:
		return nil, "", nil
	case tls.CABundle != "":
		return []byte(tls.CABundle), field + ".caBundle", nil
	case tls.CABundleSecretRef != nil:
		b, err := r.ReadSecretKey(ctx, r.SecretNamespace(p), *tls.CABundleSecretRef, "ca.crt")
		return b, field + ".caBundleSecretRef", err
	case tls.CABundleConfigMapRef != nil:
		f := field + ".caBundleConfigMapRef"
		b, err := r.readConfigMapKey(ctx, r.SecretNamespace(p), *tls.CABundleConfigMapRef, "ca.crt", f)
		return b, f, err
	}
	return nil, "", nil
}

func poolOf(bundle []byte, field string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return nil, &SpecError{Field: field, Err: errors.New("holds no PEM certificate")}
	}
	return pool, nil
}
