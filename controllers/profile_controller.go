// Package controllers holds the operator's reconcilers: the profile
// controller, which checks SCEP servers and keeps each profile's Ready
// condition and status, and the wiring of issuer-lib's CertificateRequest
// controller to the signer.
package controllers

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/ndes"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/internal/servertext"
)

// Reasons of a profile's Ready condition.
const (
	ReasonChecked             = "Checked"
	ReasonInvalidSpec         = "InvalidSpec"
	ReasonSecretNotFound      = "SecretNotFound"
	ReasonUnreachable         = "Unreachable"
	ReasonServerError         = "ServerError"
	ReasonFingerprintMismatch = "FingerprintMismatch"
	ReasonUnsupportedServer   = "UnsupportedServer"
	ReasonCAExpired           = "CAExpired"
	ReasonSignerError         = "SignerError"
	// ReasonSignerSecretConflict: a Secret with the signer Secret's name
	// exists that the operator did not create for this profile; it is left
	// untouched and nothing is sent until it is deleted or renamed.
	ReasonSignerSecretConflict = "SignerSecretConflict"
	// ReasonCredentialsRejected: NDES refused the dynamic challenge's admin
	// credentials (HTTP 401, or no permission to enroll).
	ReasonCredentialsRejected = "CredentialsRejected"
	// ReasonDestinationRefused: the profile's url or NDES admin url is (or
	// resolves to) an address the operator's egress policy refuses.
	ReasonDestinationRefused = "DestinationRefused"
	// ReasonKerberosError: a Kerberos dynamic challenge could not get a
	// ticket for a reason other than its credentials (clock skew, an
	// unknown SPN, no KDC answering), seen when its credentials are checked.
	ReasonKerberosError = "KerberosError"
	// ReasonBelowCryptoFloor: the server offers nothing as strong as the
	// profile's spec.cryptoFloor (or the default floor) allows.
	ReasonBelowCryptoFloor = "BelowCryptoFloor"
)

// AnnotationValidateCredentials on a profile with a Dynamic challenge asks
// the controller to fetch one password now, to check the credentials; set
// it (to any new value) after fixing them. Periodic checks never fetch
// passwords: NDES keeps only a few, for an hour.
const AnnotationValidateCredentials = "scep.certificates.dev/validate-credentials"

// annotationValidated records which AnnotationValidateCredentials value was acted on.
const annotationValidated = "scep.certificates.dev/validated-credentials"

// Event reasons that are not Ready reasons.
const (
	EventCAExpiringSoon = "CAExpiringSoon"
	EventInsecureTLS    = "InsecureTLS"
	// EventPlainHTTP: secrets travel over http by the profile's explicit
	// choice (dynamic.allowPlainHTTP, challenge.allowUnpinnedHTTP).
	EventPlainHTTP          = "PlainHTTP"
	EventSignerCreated      = "SignerCreated"
	EventSignerRenewed      = "SignerRenewed"
	expiryWarningWindow     = 30 * 24 * time.Hour
	failureRecheckMaxPeriod = time.Minute
)

// ProfileReconciler checks one kind of profile: on change and every
// CheckInterval (jittered), it reads the profile's Secrets, asks the server
// for its capabilities and certificates, applies the pin, keeps the
// Passthrough signer Secret, and writes Ready with a reason a person can act
// on, the certificates seen and the capabilities.
type ProfileReconciler struct {
	// Client reads profiles and writes their status and signer Secrets.
	Client client.Client
	// Registry builds SCEP clients and caches server answers for the signer.
	Registry *profiles.Registry
	// Recorder emits Events on profiles.
	Recorder events.EventRecorder
	// NewProfile returns an empty object of the kind this reconciler owns.
	NewProfile func() scepv1alpha1.Profile
	// CheckInterval is the period between checks of a healthy profile.
	CheckInterval time.Duration
	// CheckTimeout bounds one check (all its round trips), so a server that
	// does not answer holds a worker no longer; zero means no bound beyond
	// the client's per-round-trip timeout.
	CheckTimeout time.Duration
	// Workers is how many profiles of this kind are checked at once, so
	// that one slow server does not delay the checks of the others; zero
	// means 1.
	Workers int
	// Clock is the time source; nil means the real clock.
	Clock clock.Clock
	// CABundles publishes the profiles' CA certificates in ConfigMaps for
	// trust-manager; nil publishes none.
	CABundles *CAPublisher
	// TrustBundles publishes ClusterSCEPProfiles' CA certificates in
	// ClusterTrustBundles; nil publishes none.
	TrustBundles *TrustBundlePublisher
}

func (r *ProfileReconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

// jitter spreads periodic checks of many profiles over ±10% of d.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d)/5+1))
}

// Reconcile checks one profile.
func (r *ProfileReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := r.NewProfile()
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		if apierrors.IsNotFound(err) {
			key := profiles.Key{Kind: kindOf(r.NewProfile()), Namespace: req.Namespace, Name: req.Name}
			r.Registry.ForgetProfile(key)
			metrics.ForgetProfile(key.String())
			return ctrl.Result{}, r.unpublishCA(ctx, key)
		}
		return ctrl.Result{}, err
	}
	logger := log.FromContext(ctx)
	before := p.GetStatus().DeepCopy()
	checkCtx := ctx
	if r.CheckTimeout > 0 {
		var cancel context.CancelFunc
		checkCtx, cancel = context.WithTimeout(ctx, r.CheckTimeout)
		defer cancel()
	}
	reason, checkErr := r.check(checkCtx, p)
	if reason == ReasonFingerprintMismatch {
		// The server's CA is no longer what the admin vouched for: it
		// leaves the trust bundles until the pins match again.
		if err := r.unpublishCA(ctx, profiles.KeyOf(p)); err != nil {
			return ctrl.Result{}, err
		}
	}
	status := p.GetStatus()
	now := metav1.NewTime(r.now())
	status.LastCheckTime = &now
	cond := metav1.Condition{Type: "Ready", ObservedGeneration: p.GetGeneration()}
	if checkErr == nil {
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonChecked
		cond.Message = readyMessage(p)
	} else {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, checkErr.Error()
	}
	prev := meta.FindStatusCondition(before.Conditions, "Ready")
	meta.SetStatusCondition(&status.Conditions, cond)
	r.setPolicyWarning(p)
	if err := r.Client.Status().Update(ctx, p); err != nil {
		return ctrl.Result{}, err
	}
	metrics.SetProfileReady(profiles.KeyOf(p).String(), checkErr == nil, cond.Reason)
	changed := prev == nil || prev.Status != cond.Status || prev.Reason != cond.Reason || prev.Message != cond.Message
	if changed {
		if checkErr == nil {
			r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, ReasonChecked, "Check", "%s", cond.Message)
			logger.Info("profile is Ready", "url", p.GetSpec().URL)
		} else {
			r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, reason, "Check", "%s", cond.Message)
			logger.Info("profile is not Ready", "reason", reason, "message", cond.Message)
		}
	}
	if checkErr != nil {
		return ctrl.Result{RequeueAfter: jitter(min(r.CheckInterval, failureRecheckMaxPeriod))}, nil
	}
	return ctrl.Result{RequeueAfter: jitter(r.CheckInterval)}, nil
}

// check does the work of one check and returns the Ready reason of a failure.
func (r *ProfileReconciler) check(ctx context.Context, p scepv1alpha1.Profile) (string, error) {
	spec := p.GetSpec()
	if err := checkPolicySpec(p); err != nil {
		return ReasonInvalidSpec, err
	}
	if _, err := profiles.Pins(spec); err != nil {
		return ReasonInvalidSpec, err
	}
	if reason, err := r.checkSecrets(ctx, p); err != nil {
		return reason, err
	}
	if profiles.NeedsSigner(spec) {
		if reason, err := r.ensureSigner(ctx, p); err != nil {
			return reason, err
		}
	}
	if spec.Challenge.Type == scepv1alpha1.ChallengeDynamic {
		if reason, err := r.checkCredentials(ctx, p); err != nil {
			return reason, err
		}
	}
	if spec.TLS != nil && spec.TLS.InsecureSkipVerify {
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, EventInsecureTLS, "Check", "TLS verification of %s is turned off: anyone on the path can answer for the SCEP server", spec.URL)
	}
	r.warnInsecureTransport(p)
	previous := p.GetStatus().DeepCopy()
	info, reason, err := r.checkServers(ctx, p, previous)
	if err != nil {
		return reason, err
	}
	r.recordServer(p, info)
	next, nextKnown := r.followRollover(ctx, p, previous, info)
	now := r.now()
	for _, cc := range info.CACerts.Certs {
		left := cc.NotAfter.Sub(now)
		switch {
		case left <= 0:
			return ReasonCAExpired, fmt.Errorf("the %s certificate %s expired on %s; renew it on the server (and update caFingerprint if it pins it)", cc.Role, servertext.Quote(cc.Subject.String(), 256), cc.NotAfter.UTC().Format(time.RFC3339))
		case left < expiryWarningWindow:
			r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, EventCAExpiringSoon, "Check", "the %s certificate %s expires on %s (in %d days)", cc.Role, servertext.Quote(cc.Subject.String(), 256), cc.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24))
		}
	}
	if nextKnown {
		r.publishCA(ctx, p, info, next)
	}
	return "", nil
}

// warnInsecureTransport sets a Warning Event for each way the profile lets
// secrets travel unprotected, by its explicit choice.
func (r *ProfileReconciler) warnInsecureTransport(p scepv1alpha1.Profile) {
	spec := p.GetSpec()
	ch := spec.Challenge
	if ch.Type == scepv1alpha1.ChallengeNone || ch.Type == "" {
		return
	}
	if ch.AllowUnpinnedHTTP && !profiles.Pinned(spec) && strings.HasPrefix(strings.ToLower(spec.URL), "http://") {
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, EventPlainHTTP, "Check", "challenge.allowUnpinnedHTTP: the challenge password is encrypted to whoever answers GetCACert at %s; set caFingerprint", spec.URL)
	}
	d := ch.Dynamic
	if ch.Type != scepv1alpha1.ChallengeDynamic || d == nil {
		return
	}
	if d.AllowPlainHTTP && strings.HasPrefix(strings.ToLower(d.URL), "http://") {
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, EventPlainHTTP, "Check", "challenge.dynamic.allowPlainHTTP: the NDES account's credentials go to %s over plain http (NTLM can be relayed, Basic read); use https", d.URL)
	}
	if d.TLS != nil && d.TLS.InsecureSkipVerify {
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, EventInsecureTLS, "Check", "TLS verification of the NDES admin page %s is turned off: anyone on the path can answer for it and collect enrollment passwords", d.URL)
	}
}

func (r *ProfileReconciler) checkSecrets(ctx context.Context, p scepv1alpha1.Profile) (string, error) {
	spec := p.GetSpec()
	ns := r.Registry.SecretNamespace(p)
	var err error
	switch spec.Challenge.Type {
	case scepv1alpha1.ChallengeStatic:
		_, err = r.Registry.ReadSecretKey(ctx, ns, *spec.Challenge.PasswordSecretRef, "password")
	case scepv1alpha1.ChallengeDynamic:
		err = r.Registry.CheckCredentialsSecret(ctx, p)
	}
	if err == nil {
		// The TLS bundle is read when the client is built.
		_, err = r.Registry.Client(ctx, p)
	}
	var se *profiles.SecretError
	var spe *profiles.SpecError
	switch {
	case err == nil:
		return "", nil
	case egress.IsRefused(err):
		return ReasonDestinationRefused, err
	case errors.As(err, &se):
		return ReasonSecretNotFound, err
	case errors.As(err, &spe):
		return ReasonInvalidSpec, err
	}
	return ReasonUnreachable, err
}

// checkCredentials reports a refusal of the NDES admin credentials seen while
// enrolling, and fetches one password when the validate annotation asks.
func (r *ProfileReconciler) checkCredentials(ctx context.Context, p scepv1alpha1.Profile) (string, error) {
	if err := r.Registry.CheckDynamic(ctx, p); err != nil {
		var se *profiles.SecretError
		switch {
		case egress.IsRefused(err):
			return ReasonDestinationRefused, err
		case errors.As(err, &se):
			return ReasonSecretNotFound, err
		}
		return ReasonInvalidSpec, err
	}
	if want := p.GetAnnotations()[AnnotationValidateCredentials]; want != "" && want != p.GetAnnotations()[annotationValidated] {
		_, err := r.Registry.DynamicPassword(ctx, p)
		orig := p.DeepCopyObject().(scepv1alpha1.Profile)
		anns := p.GetAnnotations()
		anns[annotationValidated] = want
		p.SetAnnotations(anns)
		if perr := r.Client.Patch(ctx, p, client.MergeFrom(orig)); perr != nil {
			return ReasonUnreachable, perr
		}
		switch {
		case err == nil:
			r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, "CredentialsValid", "Check", "NDES issued a challenge password to the profile's credentials (one password of its cache was used)")
		case ndes.IsAuthError(err):
			return ReasonCredentialsRejected, err
		case ndes.IsCacheFull(err):
			// The credentials work: NDES answered with its own page.
		case egress.IsRefused(err):
			return ReasonDestinationRefused, err
		case ndes.IsKerberosError(err):
			return ReasonKerberosError, err
		default:
			return ReasonUnreachable, fmt.Errorf("fetching a challenge password from %s: %w", p.GetSpec().Challenge.Dynamic.URL, err)
		}
	}
	if msg, rejected := r.Registry.CredentialsRejected(ctx, p); rejected {
		return ReasonCredentialsRejected, fmt.Errorf("%s (fix the credentials Secret, or set annotation %s to check them again)", msg, AnnotationValidateCredentials)
	}
	return "", nil
}

// ensureSigner creates the Passthrough signer Secret if there is none, or
// renews it a month before its certificate ends. A Secret of that name is
// used only when the operator created it for this very profile (see
// profiles.CheckSignerSecret); any other is never overwritten, patched or
// adopted, and the check fails with ReasonSignerSecretConflict.
func (r *ProfileReconciler) ensureSigner(ctx context.Context, p scepv1alpha1.Profile) (string, error) {
	s := &corev1.Secret{}
	ns, name := r.Registry.SecretNamespace(p), profiles.SignerSecretName(p)
	event := ""
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)
	switch {
	case apierrors.IsNotFound(err):
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS}
		if err := profiles.MarkSignerSecret(s, p, r.Client.Scheme()); err != nil {
			return ReasonSignerError, err
		}
		if s.Data, err = profiles.NewSignerSecretData(p, r.now()); err != nil {
			return ReasonSignerError, err
		}
		// Create fails if a Secret of that name appeared meanwhile, rather
		// than overwrite it; the next check looks at it.
		if err := r.Client.Create(ctx, s); err != nil {
			return ReasonSignerError, fmt.Errorf("creating the signer Secret %s/%s: %w", ns, name, err)
		}
		event = EventSignerCreated
	case err != nil:
		return ReasonSignerError, fmt.Errorf("reading the signer Secret %s/%s: %w", ns, name, err)
	default:
		if event, err = r.keepSigner(ctx, p, s); err != nil {
			var conflict *profiles.SignerSecretConflictError
			if errors.As(err, &conflict) {
				p.GetStatus().SignerSecretName = ""
				return ReasonSignerSecretConflict, err
			}
			return ReasonSignerError, err
		}
	}
	p.GetStatus().SignerSecretName = name
	if event != "" {
		r.Registry.ForgetSigner(profiles.KeyOf(p))
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, event, "Check", "Passthrough signer (RSA-2048, self-signed) stored in Secret %s/%s", ns, name)
	}
	return "", nil
}

// keepSigner renews the operator's own signer Secret s when its certificate
// is about to end, and returns the Event to emit, if any. A Secret from an
// operator that did not label its Secrets yet is labelled and owned first.
func (r *ProfileReconciler) keepSigner(ctx context.Context, p scepv1alpha1.Profile, s *corev1.Secret) (string, error) {
	orig := s.DeepCopy()
	if profiles.IsLegacySignerSecret(s, p) {
		if err := profiles.MarkSignerSecret(s, p, r.Client.Scheme()); err != nil {
			return "", err
		}
	} else if err := profiles.CheckSignerSecret(s, p); err != nil {
		return "", err
	}
	event := ""
	signer, perr := profiles.ParseSigner(s.Data)
	if perr != nil || signer.Certificate.NotAfter.Sub(r.now()) <= profiles.SignerRenewBefore {
		data, err := profiles.NewSignerSecretData(p, r.now())
		if err != nil {
			return "", err
		}
		s.Data = data
		event = EventSignerCreated
		if perr == nil {
			event = EventSignerRenewed
		}
	}
	if equality.Semantic.DeepEqual(orig, s) {
		return "", nil
	}
	if err := r.Client.Patch(ctx, s, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return "", fmt.Errorf("updating the signer Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return event, nil
}

func (r *ProfileReconciler) recordServer(p scepv1alpha1.Profile, info *scepclient.ServerInfo) {
	status := p.GetStatus()
	status.Capabilities = info.Caps.Strings()
	status.Algorithms = info.Algorithms.String()
	status.CACertificates = nil
	status.CAExpiry = nil
	key := profiles.KeyOf(p).String()
	metrics.CAExpiry.DeletePartialMatch(map[string]string{"profile": key})
	for _, cc := range info.CACerts.Certs {
		fp := scep.FingerprintOf(cc.Certificate, crypto.SHA256).Hex()
		status.CACertificates = append(status.CACertificates, scepv1alpha1.CACertificate{
			// The subject is the server's text: cleaned and capped.
			Role: string(cc.Role), Subject: servertext.Clean(cc.Subject.String(), 256), NotAfter: metav1.NewTime(cc.NotAfter), SHA256Fingerprint: fp,
		})
		if status.CAExpiry == nil || cc.NotAfter.Before(status.CAExpiry.Time) {
			t := metav1.NewTime(cc.NotAfter)
			status.CAExpiry = &t
		}
		metrics.CAExpiry.WithLabelValues(key, string(cc.Role), fp).Set(float64(cc.NotAfter.Unix()))
	}
}

// classify maps a check failure to the Ready reason.
func classify(err error) string {
	var (
		mismatch   *scep.FingerprintMismatchError
		belowFloor *scepclient.BelowFloorError
		httpErr    *scepclient.HTTPError
		content    *scepclient.ContentError
		tooLarge   *scepclient.TooLargeError
		redirect   *egress.RedirectError
		specErr    *profiles.SpecError
		secret     *profiles.SecretError
		netErr     net.Error
		tlsErr     *tls.CertificateVerificationError
		unknown    x509.UnknownAuthorityError
	)
	switch {
	// Before SpecError and net.Error, which carry it.
	case egress.IsRefused(err):
		return ReasonDestinationRefused
	case errors.As(err, &belowFloor):
		return ReasonBelowCryptoFloor
	case errors.As(err, &mismatch):
		return ReasonFingerprintMismatch
	case errors.As(err, &specErr):
		return ReasonInvalidSpec
	case errors.As(err, &secret):
		return ReasonSecretNotFound
	case errors.As(err, &httpErr), errors.As(err, &content), errors.As(err, &tooLarge), errors.As(err, &redirect):
		return ReasonServerError
	case errors.As(err, &netErr), errors.As(err, &tlsErr), errors.As(err, &unknown), errors.Is(err, context.DeadlineExceeded):
		// A server certificate the CA bundle does not trust is the same
		// for a person: the operator cannot reach the server safely.
		return ReasonUnreachable
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return ReasonUnreachable
	}
	return ReasonUnsupportedServer
}

func kindOf(p scepv1alpha1.Profile) string { return profiles.KeyOf(p).Kind }

// SetupWithManager registers the reconciler for its kind. Signer Secrets are
// not watched (that would need list/watch on every Secret); a deleted one is
// recreated at the profile's next check.
func (r *ProfileReconciler) SetupWithManager(mgr ctrl.Manager) error {
	obj := r.NewProfile()
	b := ctrl.NewControllerManagedBy(mgr).
		For(obj, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WatchesRawSource(source.Channel(r.Registry.Notifications(kindOf(obj)), &handler.EnqueueRequestForObject{})).
		Named(kindOf(obj)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)})
	return b.Complete(r)
}
