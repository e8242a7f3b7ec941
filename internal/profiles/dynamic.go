package profiles

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
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
	case ch <- checkEvent(p):
	default: // a check is already queued
	}
}

// checkEvent asks for a check of p with a copy of it: the caller goes on
// using p (the profile controller patches it after fetching a password)
// while the controller's event handler reads the event's object on another
// goroutine, a data race on p's fields (seen with -race).
func checkEvent(p scepv1alpha1.Profile) event.GenericEvent {
	return event.GenericEvent{Object: p.DeepCopyObject().(scepv1alpha1.Profile)}
}

// adminCredentials is what the Dynamic challenge's Secret holds. Keytab is
// set only for auth Kerberos, which takes it instead of a password.
type adminCredentials struct {
	user, password string
	keytab         []byte
	// version is the Secret's resourceVersion.
	version string
}

// credentials reads the Dynamic challenge's Secret: "username" and
// "password", or for auth Kerberos "keytab" instead of "password".
func (r *Registry) credentials(ctx context.Context, p scepv1alpha1.Profile) (adminCredentials, error) {
	d := p.GetSpec().Challenge.Dynamic
	if d == nil {
		return adminCredentials{}, &SpecError{Field: "spec.challenge.dynamic", Err: errors.New("missing")}
	}
	var s corev1.Secret
	ns := r.SecretNamespace(p)
	if err := r.Reader.Get(ctx, objectKey(ns, d.CredentialsSecretRef.Name), &s); err != nil {
		return adminCredentials{}, &SecretError{Namespace: ns, Name: d.CredentialsSecretRef.Name, Key: "username", NotFound: true}
	}
	missing := func(k string) error {
		return &SecretError{Namespace: ns, Name: d.CredentialsSecretRef.Name, Key: k, Keys: slices.Sorted(maps.Keys(s.Data))}
	}
	if len(s.Data["username"]) == 0 {
		return adminCredentials{}, missing("username")
	}
	c := adminCredentials{user: string(s.Data["username"]), password: string(s.Data["password"]), version: s.ResourceVersion}
	if strings.EqualFold(d.Auth, string(ndes.AuthKerberos)) {
		c.keytab = s.Data["keytab"]
		if c.password == "" && len(c.keytab) == 0 {
			return adminCredentials{}, missing("password")
		}
		if len(c.keytab) > 0 && d.Kerberos != nil && d.Kerberos.AllowNTLMFallback && c.password == "" {
			// Not an error: Kerberos works; the fallback cannot, and the
			// client leaves it out.
			r.Logger.Info("kerberos.allowNTLMFallback has no effect with a keytab and no password: NTLM needs the password", "profile", KeyOf(p).String())
		}
	} else if c.password == "" {
		return adminCredentials{}, missing("password")
	}
	return c, nil
}

// CheckCredentialsSecret checks that p's dynamic challenge Secret holds
// what its auth needs: a username, and a password (or, for Kerberos, a
// keytab). A *SecretError says which key is missing.
func (r *Registry) CheckCredentialsSecret(ctx context.Context, p scepv1alpha1.Profile) error {
	_, err := r.credentials(ctx, p)
	return err
}

// A krb5.conf ConfigMap, and a CA bundle ConfigMap (spec.tls.caBundleConfigMapRef),
// are read uncached, like Secrets, and only in the profile's Secret namespace
// (the chart grants get there, beside Secrets).
//
// +kubebuilder:rbac:groups="",namespace=system,resources=configmaps,verbs=get

// krb5Conf reads the krb5.conf a Kerberos dynamic challenge names, "" when
// it names none.
func (r *Registry) krb5Conf(ctx context.Context, p scepv1alpha1.Profile, k *scepv1alpha1.KerberosAuth) (string, error) {
	if k == nil || k.Krb5ConfConfigMapRef == nil {
		return "", nil
	}
	b, err := r.readConfigMapKey(ctx, r.SecretNamespace(p), *k.Krb5ConfConfigMapRef, "krb5.conf", "spec.challenge.dynamic.kerberos.krb5ConfConfigMapRef")
	return string(b), err
}

// dynamicClient builds the NDES admin page client for p from its spec and
// credentials Secret; version is the Secret's resourceVersion.
func (r *Registry) dynamicClient(ctx context.Context, p scepv1alpha1.Profile) (c *ndes.Client, version string, err error) {
	creds, err := r.credentials(ctx, p)
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
		Username:       creds.user,
		Password:       creds.password,
		AllowPlainHTTP: d.AllowPlainHTTP,
		Egress:         r.Egress,
		Logger:         r.Logger.WithValues("profile", KeyOf(p).String()),
	}
	if auth == ndes.AuthKerberos {
		if cfg.Kerberos, err = r.kerberos(ctx, p, creds); err != nil {
			return nil, "", err
		}
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
	return c, creds.version, nil
}

// kerberos maps the profile's kerberos block to the client's settings.
func (r *Registry) kerberos(ctx context.Context, p scepv1alpha1.Profile, creds adminCredentials) (*ndes.Kerberos, error) {
	k := p.GetSpec().Challenge.Dynamic.Kerberos
	if k == nil {
		return nil, &SpecError{Field: "spec.challenge.dynamic.kerberos", Err: errors.New("auth Kerberos needs it")}
	}
	conf, err := r.krb5Conf(ctx, p, k)
	if err != nil {
		return nil, err
	}
	return &ndes.Kerberos{
		Realm:             k.Realm,
		KDCs:              k.KDCs,
		Krb5Conf:          conf,
		SPN:               k.ServicePrincipalName,
		Keytab:            creds.keytab,
		AllowNTLMFallback: k.AllowNTLMFallback,
	}, nil
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
			case ch <- checkEvent(p):
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
	creds, err := r.credentials(ctx, p)
	if err != nil || creds.version != st.secretVersion || p.GetGeneration() != st.generation {
		r.dyn.mu.Lock()
		delete(r.dyn.rejected, KeyOf(p))
		r.dyn.mu.Unlock()
		return "", false
	}
	return st.message, true
}
