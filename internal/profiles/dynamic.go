package profiles

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/ndes"
)

// credentialState remembers that NDES refused a profile's admin credentials,
// until the credentials Secret or the profile changes.
type credentialState struct {
	message       string
	secretVersion string
	generation    int64
}

// dynamicState is the part of the Registry about NDES dynamic challenges.
type dynamicState struct {
	mu       sync.Mutex
	rejected map[Key]credentialState
	notify   map[string]chan event.GenericEvent // by kind
}

// Notifications returns the channel on which the Registry asks the profile
// controller of kind to check a profile again (credentials refused while
// enrolling). Call it before the controllers start.
func (r *Registry) Notifications(kind string) <-chan event.GenericEvent {
	r.dyn.mu.Lock()
	defer r.dyn.mu.Unlock()
	if r.dyn.notify == nil {
		r.dyn.notify = map[string]chan event.GenericEvent{}
	}
	ch, ok := r.dyn.notify[kind]
	if !ok {
		ch = make(chan event.GenericEvent, 64)
		r.dyn.notify[kind] = ch
	}
	return ch
}

// Recheck asks p's profile controller to check p again now (its SCEP
// server's answers were forgotten, e.g. a reply signed by a CA the cached
// GetCACert did not have: perhaps the CA rolled over), so its status shows
// what the server serves today rather than at the last periodic check.
func (r *Registry) Recheck(p scepv1alpha1.Profile) {
	r.dyn.mu.Lock()
	ch := r.dyn.notify[KeyOf(p).Kind]
	r.dyn.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- event.GenericEvent{Object: p}:
	default: // a check is already queued
	}
}

// credentials reads the Dynamic challenge's Secret: username, password and
// the Secret's resourceVersion.
func (r *Registry) credentials(ctx context.Context, p scepv1alpha1.Profile) (user, pass, version string, err error) {
	d := p.GetSpec().Challenge.Dynamic
	if d == nil {
		return "", "", "", &SpecError{Field: "spec.challenge.dynamic", Err: errors.New("missing")}
	}
	var s corev1.Secret
	ns := r.SecretNamespace(p)
	if err := r.Reader.Get(ctx, objectKey(ns, d.CredentialsSecretRef.Name), &s); err != nil {
		return "", "", "", &SecretError{Namespace: ns, Name: d.CredentialsSecretRef.Name, Key: "username", NotFound: true}
	}
	for _, k := range []string{"username", "password"} {
		if len(s.Data[k]) == 0 {
			return "", "", "", &SecretError{Namespace: ns, Name: d.CredentialsSecretRef.Name, Key: k}
		}
	}
	return string(s.Data["username"]), string(s.Data["password"]), s.ResourceVersion, nil
}

// dynamicClient builds the NDES admin page client for p from its spec and
// credentials Secret; version is the Secret's resourceVersion.
func (r *Registry) dynamicClient(ctx context.Context, p scepv1alpha1.Profile) (c *ndes.Client, version string, err error) {
	user, pass, version, err := r.credentials(ctx, p)
	if err != nil {
		return nil, "", err
	}
	spec := p.GetSpec()
	auth, err := ndes.ParseAuth(spec.Challenge.Dynamic.Auth)
	if err != nil {
		return nil, "", &SpecError{Field: "spec.challenge.dynamic.auth", Err: err}
	}
	if err := CheckTransport(spec); err != nil {
		return nil, "", err
	}
	d := spec.Challenge.Dynamic
	cfg := ndes.Config{
		URL:            d.URL,
		Auth:           auth,
		Username:       user,
		Password:       pass,
		AllowPlainHTTP: d.AllowPlainHTTP,
		Egress:         r.Egress,
		Logger:         r.Logger.WithValues("profile", KeyOf(p).String()),
	}
	// The admin page has its own trust, independent of the SCEP url's: an
	// http SCEP url may sit beside an https admin page, and the two may be
	// served by different certificates.
	if d.TLS != nil {
		cfg.InsecureSkipVerify = d.TLS.InsecureSkipVerify
		bundle, field, err := r.caBundle(ctx, p, d.TLS, "spec.challenge.dynamic.tls")
		if err != nil {
			return nil, "", err
		}
		if bundle != nil {
			if cfg.RootCAs, err = poolOf(bundle, field); err != nil {
				return nil, "", err
			}
		}
	}
	if c, err = ndes.New(cfg); err != nil {
		field := "spec.challenge.dynamic"
		if egress.IsRefused(err) {
			field += ".url"
		}
		return nil, "", &SpecError{Field: field, Err: err}
	}
	return c, version, nil
}

// CheckDynamic checks, without fetching a password, that p's dynamic
// challenge can be used: its Secret and keys exist and the client accepts
// the configuration (e.g. Basic authentication only over https).
func (r *Registry) CheckDynamic(ctx context.Context, p scepv1alpha1.Profile) error {
	_, _, err := r.dynamicClient(ctx, p)
	return err
}

// DynamicPassword fetches one fresh one-time challenge password from the
// profile's NDES admin page. NDES passwords are single-use, so every
// enrollment attempt calls it. A credentials refusal is remembered for
// CredentialsRejected and the profile controller is asked to check again.
func (r *Registry) DynamicPassword(ctx context.Context, p scepv1alpha1.Profile) (string, error) {
	c, version, err := r.dynamicClient(ctx, p)
	if err != nil {
		return "", err
	}
	defer c.CloseIdleConnections()
	pw, err := c.Password(ctx)
	var unknownCA x509.UnknownAuthorityError
	switch spec := p.GetSpec(); {
	case egress.IsRefused(err):
		// The profile names a destination the operator may not reach: a
		// fault of the profile, not of the request.
		err = &SpecError{Field: "spec.challenge.dynamic.url", Err: err}
	case errors.As(err, &unknownCA) && spec.Challenge.Dynamic.TLS == nil && spec.TLS != nil:
		// Before challenge.dynamic.tls existed, spec.tls trusted the admin
		// page too; a profile written then says so here.
		err = fmt.Errorf("%w (spec.tls trusts the SCEP url only: give the admin page's CA in challenge.dynamic.tls)", err)
	}
	key := KeyOf(p)
	if !errors.Is(err, context.Canceled) {
		r.observeRoundTrip(key, answeredErr(err))
	}
	switch {
	case ndes.IsAuthError(err):
		r.dyn.mu.Lock()
		if r.dyn.rejected == nil {
			r.dyn.rejected = map[Key]credentialState{}
		}
		r.dyn.rejected[key] = credentialState{message: err.Error(), secretVersion: version, generation: p.GetGeneration()}
		ch := r.dyn.notify[key.Kind]
		r.dyn.mu.Unlock()
		if ch != nil {
			select {
			case ch <- event.GenericEvent{Object: p}:
			default: // a check is already queued
			}
		}
	case err == nil:
		r.dyn.mu.Lock()
		delete(r.dyn.rejected, key)
		r.dyn.mu.Unlock()
	}
	return pw, err
}

// CredentialsRejected returns NDES's refusal of p's admin credentials, if
// the same credentials Secret and spec were refused while enrolling.
func (r *Registry) CredentialsRejected(ctx context.Context, p scepv1alpha1.Profile) (string, bool) {
	r.dyn.mu.Lock()
	st, ok := r.dyn.rejected[KeyOf(p)]
	r.dyn.mu.Unlock()
	if !ok {
		return "", false
	}
	_, _, version, err := r.credentials(ctx, p)
	if err != nil || version != st.secretVersion || p.GetGeneration() != st.generation {
		r.dyn.mu.Lock()
		delete(r.dyn.rejected, KeyOf(p))
		r.dyn.mu.Unlock()
		return "", false
	}
	return st.message, true
}
