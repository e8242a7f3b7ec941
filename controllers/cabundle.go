package controllers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// The CA bundle ConfigMaps that CAPublisher writes for trust-manager. The
// operator's RBAC for them is not in the markers (controller-gen would put
// the Role in the operator's namespace): the chart's caDistribution values
// and config/overlays/ca-bundle grant configmaps get, list, create, update
// and delete in the one trust namespace.
const (
	// LabelCABundle marks a CA bundle ConfigMap; its value says which kind
	// of profile published it (CABundleCluster or CABundleNamespaced), so a
	// trust-manager Bundle can take ClusterSCEPProfiles' CAs only, which is
	// what a cluster-wide trust bundle should hold.
	LabelCABundle = "scep.certificates.dev/ca-bundle"
	// CABundleCluster is LabelCABundle's value for a ClusterSCEPProfile.
	CABundleCluster = "cluster"
	// CABundleNamespaced is LabelCABundle's value for a SCEPProfile: its CA
	// is chosen by whoever may edit SCEPProfiles in that namespace.
	CABundleNamespaced = "namespaced"
	// AnnotationCABundleProfile names the profile a CA bundle ConfigMap
	// belongs to ("ClusterSCEPProfile/name" or "SCEPProfile/namespace/name");
	// the operator writes and deletes only ConfigMaps that carry it.
	AnnotationCABundleProfile = "scep.certificates.dev/profile"
	// CABundleKey is the ConfigMap key of the PEM bundle.
	CABundleKey = "ca.crt"
	// managedBy is app.kubernetes.io/managed-by's value on CA bundles.
	managedBy = "scep-operator"
)

// Events of CA distribution.
const (
	// EventCABundlePublished: the profile's CA bundle ConfigMap was
	// created or its certificates changed.
	EventCABundlePublished = "CABundlePublished"
	// EventCABundleNotPublished: the ConfigMap could not be written, or a
	// ConfigMap of its name belongs to something else.
	EventCABundleNotPublished = "CABundleNotPublished"
)

// CAPublisher keeps, for each profile it may publish, a ConfigMap in one
// trust namespace holding the profile's CA certificates (never RA
// certificates): those GetCACert answered after the pins, and during a
// rollover the next CA that GetNextCACert announced signed by them. A
// trust-manager Bundle selects them all by LabelCABundle.
//
// Cleanup is label-based, not by finalizer or ownerReference: a ConfigMap in
// the trust namespace cannot be owned by a SCEPProfile in another namespace
// or (for garbage collection to be allowed) by a cluster-scoped object the
// operator may not update, and a finalizer would block every profile
// deletion while the operator is down. The profile controller deletes a
// profile's ConfigMap when the profile is gone, and Sweep, at the start of
// each leader, deletes those whose profile went while no operator ran.
type CAPublisher struct {
	// Client writes ConfigMaps (create, update, delete).
	Client client.Client
	// Reader reads ConfigMaps and profiles uncached, so that no informer
	// needs ConfigMaps outside the trust namespace.
	Reader client.Reader
	// Namespace is the trust namespace.
	Namespace string
	// NamespacedProfiles lets SCEPProfiles publish too. Off by default: a
	// tenant who may create a SCEPProfile would otherwise choose a CA that a
	// Bundle selecting LabelCABundle makes every workload trust.
	NamespacedProfiles bool
}

// Publishes reports whether p's CA is published.
func (c *CAPublisher) Publishes(p scepv1alpha1.Profile) bool {
	return c != nil && (p.GetNamespace() == "" || c.NamespacedProfiles)
}

// CABundleName is the ConfigMap name of a profile's CA bundle. Namespaces
// hold no dot, so "ns.<namespace>.<name>" and "cluster.<name>" never
// collide; a name too long for a ConfigMap is cut and ends in a label that
// is a hash of the whole (still a DNS subdomain, as profile names are).
func CABundleName(k profiles.Key) string {
	name := "scep-ca-cluster." + k.Name
	if k.Namespace != "" {
		name = "scep-ca-ns." + k.Namespace + "." + k.Name
	}
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:253-41], ".-") + "." + hex.EncodeToString(sum[:20])
}

// profileRef is AnnotationCABundleProfile's value for k.
func profileRef(k profiles.Key) string {
	if k.Namespace == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name
}

// parseProfileRef is the inverse of profileRef.
func parseProfileRef(s string) (profiles.Key, bool) {
	parts := strings.Split(s, "/")
	switch {
	case len(parts) == 2 && parts[0] == "ClusterSCEPProfile":
		return profiles.Key{Kind: parts[0], Name: parts[1]}, true
	case len(parts) == 3 && parts[0] == "SCEPProfile":
		return profiles.Key{Kind: parts[0], Namespace: parts[1], Name: parts[2]}, true
	}
	return profiles.Key{}, false
}

// ErrCABundleConflict: a ConfigMap of the bundle's name exists that is not
// the operator's bundle of this profile; it is left untouched.
var ErrCABundleConflict = errors.New("a ConfigMap of that name exists that the operator did not publish for this profile; delete or rename it")

// Publish writes p's CA bundle, PEM as PEMOf encodes it. It reports
// whether the ConfigMap changed.
func (c *CAPublisher) Publish(ctx context.Context, p scepv1alpha1.Profile, bundle []byte) (bool, error) {
	key := profiles.KeyOf(p)
	name := CABundleName(key)
	if len(bundle) == 0 {
		return false, nil
	}
	value := CABundleCluster
	if key.Namespace != "" {
		value = CABundleNamespaced
	}
	var cm corev1.ConfigMap
	err := c.Reader.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: name,
				Labels:      map[string]string{LabelCABundle: value, "app.kubernetes.io/managed-by": managedBy},
				Annotations: map[string]string{AnnotationCABundleProfile: profileRef(key)}},
			Data: map[string]string{CABundleKey: string(bundle)},
		}
		// Create fails if a ConfigMap of that name appeared meanwhile,
		// rather than overwrite it.
		if err := c.Client.Create(ctx, &cm); err != nil {
			return false, fmt.Errorf("creating ConfigMap %s/%s: %w", c.Namespace, name, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading ConfigMap %s/%s: %w", c.Namespace, name, err)
	}
	if cm.Annotations[AnnotationCABundleProfile] != profileRef(key) {
		return false, fmt.Errorf("ConfigMap %s/%s: %w", c.Namespace, name, ErrCABundleConflict)
	}
	if cm.Labels[LabelCABundle] == value && cm.Data[CABundleKey] == string(bundle) && len(cm.Data) == 1 && len(cm.BinaryData) == 0 {
		return false, nil
	}
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels[LabelCABundle] = value
	cm.Data = map[string]string{CABundleKey: string(bundle)}
	cm.BinaryData = nil
	// Update carries the resourceVersion read: a concurrent change fails
	// and the next check writes again.
	if err := c.Client.Update(ctx, &cm); err != nil {
		return false, fmt.Errorf("updating ConfigMap %s/%s: %w", c.Namespace, name, err)
	}
	return true, nil
}

// Unpublish deletes the CA bundle of the profile k, if the operator
// published one.
func (c *CAPublisher) Unpublish(ctx context.Context, k profiles.Key) error {
	var cm corev1.ConfigMap
	name := CABundleName(k)
	if err := c.Reader.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, &cm); err != nil {
		return client.IgnoreNotFound(err)
	}
	return deleteIfPublished(ctx, c.Client, &cm, k)
}

// deleteIfPublished deletes obj (a CA bundle ConfigMap or
// ClusterTrustBundle) when the operator published it for the profile k.
func deleteIfPublished(ctx context.Context, c client.Client, obj client.Object, k profiles.Key) error {
	if obj.GetAnnotations()[AnnotationCABundleProfile] != profileRef(k) {
		return nil
	}
	// The preconditions keep an object recreated meanwhile.
	uid, rv := obj.GetUID(), obj.GetResourceVersion()
	err := c.Delete(ctx, obj, client.Preconditions{UID: &uid, ResourceVersion: &rv})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// Sweep deletes the CA bundles whose profile no longer exists, or may no
// longer publish (SCEPProfiles once NamespacedProfiles is turned off).
func (c *CAPublisher) Sweep(ctx context.Context) error {
	var list corev1.ConfigMapList
	if err := c.Reader.List(ctx, &list, client.InNamespace(c.Namespace), client.HasLabels{LabelCABundle}); err != nil {
		return fmt.Errorf("listing the CA bundles in %s: %w", c.Namespace, err)
	}
	var errs []error
	for i := range list.Items {
		cm := &list.Items[i]
		k, ok := parseProfileRef(cm.Annotations[AnnotationCABundleProfile])
		if !ok || CABundleName(k) != cm.Name {
			continue // not the operator's
		}
		var p scepv1alpha1.Profile = &scepv1alpha1.ClusterSCEPProfile{}
		if k.Namespace != "" {
			p = &scepv1alpha1.SCEPProfile{}
		}
		err := c.Reader.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: k.Name}, p)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			errs = append(errs, err)
			continue
		case c.Publishes(p):
			continue
		}
		log.FromContext(ctx).Info("deleting a CA bundle whose profile is gone or may not publish", "configMap", cm.Namespace+"/"+cm.Name, "profile", k.String())
		if err := deleteIfPublished(ctx, c.Client, cm, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PEMOf encodes the CA certificates of certs (basicConstraints CA:TRUE;
// RA certificates never) in order, each once, and says how many.
func PEMOf(certs []*x509.Certificate) ([]byte, int) {
	var out bytes.Buffer
	seen := map[[32]byte]bool{}
	for _, c := range certs {
		sum := sha256.Sum256(c.Raw)
		if !c.IsCA || seen[sum] {
			continue
		}
		seen[sum] = true
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return out.Bytes(), len(seen)
}

// publishCA writes p's CA bundle (ConfigMap, ClusterTrustBundle) after a
// successful check: the CA certificates of the GetCACert answer (after the
// pins) and the next CA certificates that verified. A failure is an Event,
// never un-Ready: the profile still issues, and the next check writes again.
func (r *ProfileReconciler) publishCA(ctx context.Context, p scepv1alpha1.Profile, info *scepclient.ServerInfo, next []*x509.Certificate) {
	toConfigMap, toTrustBundle := r.CABundles.Publishes(p), r.TrustBundles.Publishes(p)
	if !toConfigMap && !toTrustBundle {
		return
	}
	if why := unverifiedCA(p.GetSpec()); why != "" {
		// Whoever answered GetCACert chose the CA: it must not become
		// what the cluster trusts.
		if err := r.unpublishCA(ctx, profiles.KeyOf(p)); err != nil {
			log.FromContext(ctx).Info("CA bundle not deleted", "error", err.Error())
		}
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, EventCABundleNotPublished, "Publish", "the CA is not published: %s", why)
		return
	}
	var cas []*x509.Certificate
	for _, cc := range info.CACerts.Certs {
		if cc.Role == scep.RoleCA {
			cas = append(cas, cc.Certificate)
		}
	}
	cas = append(cas, next...)
	bundle, n := PEMOf(cas)
	key := profiles.KeyOf(p)
	if toConfigMap {
		changed, err := r.CABundles.Publish(ctx, p, bundle)
		r.reportPublished(ctx, p, "ConfigMap "+r.CABundles.Namespace+"/"+CABundleName(key), changed, err, n, len(next))
	}
	if toTrustBundle {
		changed, err := r.TrustBundles.Publish(ctx, p, bundle)
		r.reportPublished(ctx, p, "ClusterTrustBundle of signer "+ClusterSignerName(key.Name), changed, err, n, len(next))
	}
}

// unverifiedCA says why the CA that spec's server serves is not verified,
// "" when it is: pinned (caFingerprint, caFingerprints), or fetched over
// https with the server's certificate verified. An unpinned http:// url
// trusts whoever answers on the path.
func unverifiedCA(spec *scepv1alpha1.SCEPProfileSpec) string {
	switch {
	case profiles.Pinned(spec):
		return ""
	case !strings.HasPrefix(strings.ToLower(spec.URL), "https://"):
		return "an http:// url without caFingerprint takes the CA from whoever answers GetCACert; pin it with caFingerprint or caFingerprints, or use https"
	case spec.TLS != nil && spec.TLS.InsecureSkipVerify:
		return "tls.insecureSkipVerify takes the CA from whoever answers GetCACert; pin it with caFingerprint or caFingerprints"
	}
	return ""
}

func (r *ProfileReconciler) reportPublished(ctx context.Context, p scepv1alpha1.Profile, where string, changed bool, err error, n, next int) {
	switch {
	case err != nil:
		log.FromContext(ctx).Info("CA bundle not published", "object", where, "error", err.Error())
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, EventCABundleNotPublished, "Publish", "CA bundle %s: %v", where, err)
	case changed:
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, EventCABundlePublished, "Publish", "CA bundle %s holds %d CA certificate(s), %d of them announced as the next CA", where, n, next)
	}
}

// unpublishCA deletes the profile k's CA bundles.
func (r *ProfileReconciler) unpublishCA(ctx context.Context, k profiles.Key) error {
	var errs []error
	if r.CABundles != nil {
		errs = append(errs, r.CABundles.Unpublish(ctx, k))
	}
	if r.TrustBundles != nil {
		errs = append(errs, r.TrustBundles.Unpublish(ctx, k))
	}
	return errors.Join(errs...)
}

// CABundleOptions configure CA distribution.
type CABundleOptions struct {
	// Namespace is the trust namespace the CA bundle ConfigMaps go to
	// (trust-manager's --trust-namespace, cert-manager by default); empty
	// writes no ConfigMap.
	Namespace string
	// NamespacedProfiles lets SCEPProfiles publish ConfigMaps too (CAPublisher).
	NamespacedProfiles bool
	// ClusterTrustBundles writes a ClusterTrustBundle per ClusterSCEPProfile
	// (TrustBundlePublisher).
	ClusterTrustBundles bool
}

// setupCABundles returns the publishers opts ask for, nil for none, and
// runs their Sweep whenever this process starts to lead.
func setupCABundles(mgr manager.Manager, opts CABundleOptions) (*CAPublisher, *TrustBundlePublisher, error) {
	var (
		cms   *CAPublisher
		ctbs  *TrustBundlePublisher
		sweep []func(context.Context) error
	)
	if opts.Namespace != "" {
		cms = &CAPublisher{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: opts.Namespace, NamespacedProfiles: opts.NamespacedProfiles}
		sweep = append(sweep, cms.Sweep)
	}
	if opts.ClusterTrustBundles {
		ctbs = &TrustBundlePublisher{Client: mgr.GetClient(), Reader: mgr.GetAPIReader()}
		sweep = append(sweep, ctbs.Sweep)
	}
	if len(sweep) == 0 {
		return nil, nil, nil
	}
	// A failed sweep is logged, not fatal: it only tidies, and the next
	// leader sweeps again.
	return cms, ctbs, mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		for _, s := range sweep {
			if err := s(ctx); err != nil {
				mgr.GetLogger().Error(err, "sweeping the CA bundles")
			}
		}
		return nil
	}))
}
