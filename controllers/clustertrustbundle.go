package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/profiles"
)

// The ClusterTrustBundles that TrustBundlePublisher writes. As for the CA
// bundle ConfigMaps, the RBAC is not in the markers (it is off by default):
// the chart's caDistribution.clusterTrustBundles grants clustertrustbundles
// get, list, create, update and delete, and attest on the signers
// clusterscepprofiles.scep.certificates.dev/*, which the ClusterTrustBundleAttest
// admission plugin demands for a bundle that names a signer.

// clusterSignerDomain is the signer name domain of ClusterSCEPProfiles, as
// cert-manager names external issuers' signers (<resource>.<group>/<name>).
const clusterSignerDomain = "clusterscepprofiles.scep.certificates.dev"

// ClusterSignerName is the signer name of the ClusterSCEPProfile name: what
// a ClusterTrustBundle of its CA carries in spec.signerName, and what a Pod's
// projected clusterTrustBundle volume asks for.
func ClusterSignerName(name string) string { return clusterSignerDomain + "/" + name }

// ClusterTrustBundleName is the name of the ClusterSCEPProfile name's
// ClusterTrustBundle: the signer name with "/" as ":" (the API requires that
// prefix), then ":ca". It is "" when that would exceed an object name's 253
// characters (a profile name longer than 208): such a profile gets none.
func ClusterTrustBundleName(name string) string {
	n := strings.ReplaceAll(ClusterSignerName(name), "/", ":") + ":ca"
	if len(n) > 253 {
		return ""
	}
	return n
}

// errNameTooLong: the profile's name leaves no room for the prefix the
// ClusterTrustBundle API demands.
var errNameTooLong = errors.New("the profile's name is too long for a ClusterTrustBundle, whose name must start with the signer name (at most 208 characters)")

// TrustBundlePublisher keeps, for each ClusterSCEPProfile, a
// ClusterTrustBundle (certificates.k8s.io/v1, served by default from
// Kubernetes 1.37) with the same CA certificates as its CA bundle
// ConfigMap, under the profile's signer name, which Pods mount with a
// projected clusterTrustBundle volume. SCEPProfiles never get one: a
// ClusterTrustBundle is cluster-wide, readable and mountable by every
// ServiceAccount. Cleanup is label-based, as for CAPublisher.
type TrustBundlePublisher struct {
	// Client writes ClusterTrustBundles.
	Client client.Client
	// Reader reads them and profiles uncached.
	Reader client.Reader
}

// Publishes reports whether p gets a ClusterTrustBundle.
func (c *TrustBundlePublisher) Publishes(p scepv1alpha1.Profile) bool {
	return c != nil && p.GetNamespace() == ""
}

// Publish writes p's ClusterTrustBundle with bundle (PEMOf's encoding)
// and reports whether it changed.
func (c *TrustBundlePublisher) Publish(ctx context.Context, p scepv1alpha1.Profile, bundle []byte) (bool, error) {
	key := profiles.KeyOf(p)
	name := ClusterTrustBundleName(key.Name)
	switch {
	case len(bundle) == 0:
		return false, nil
	case name == "":
		return false, errNameTooLong
	}
	var ctb certificatesv1.ClusterTrustBundle
	err := c.Reader.Get(ctx, client.ObjectKey{Name: name}, &ctb)
	switch {
	case apierrors.IsNotFound(err):
		ctb = certificatesv1.ClusterTrustBundle{
			ObjectMeta: metav1.ObjectMeta{Name: name,
				Labels:      map[string]string{LabelCABundle: CABundleCluster, "app.kubernetes.io/managed-by": managedBy},
				Annotations: map[string]string{AnnotationCABundleProfile: profileRef(key)}},
			Spec: certificatesv1.ClusterTrustBundleSpec{SignerName: ClusterSignerName(key.Name), TrustBundle: string(bundle)},
		}
		if err := c.Client.Create(ctx, &ctb); err != nil {
			return false, fmt.Errorf("creating ClusterTrustBundle %s: %w", name, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading ClusterTrustBundle %s: %w", name, err)
	}
	if ctb.Annotations[AnnotationCABundleProfile] != profileRef(key) {
		return false, fmt.Errorf("ClusterTrustBundle %s: %w", name, ErrCABundleConflict)
	}
	if ctb.Spec.TrustBundle == string(bundle) {
		return false, nil
	}
	ctb.Spec.TrustBundle = string(bundle)
	if err := c.Client.Update(ctx, &ctb); err != nil {
		return false, fmt.Errorf("updating ClusterTrustBundle %s: %w", name, err)
	}
	return true, nil
}

// Unpublish deletes the ClusterTrustBundle of the profile k, if the
// operator wrote one.
func (c *TrustBundlePublisher) Unpublish(ctx context.Context, k profiles.Key) error {
	if k.Namespace != "" || ClusterTrustBundleName(k.Name) == "" {
		return nil
	}
	var ctb certificatesv1.ClusterTrustBundle
	if err := c.Reader.Get(ctx, client.ObjectKey{Name: ClusterTrustBundleName(k.Name)}, &ctb); err != nil {
		return client.IgnoreNotFound(err)
	}
	return deleteIfPublished(ctx, c.Client, &ctb, k)
}

// Sweep deletes the ClusterTrustBundles whose ClusterSCEPProfile is gone.
func (c *TrustBundlePublisher) Sweep(ctx context.Context) error {
	var list certificatesv1.ClusterTrustBundleList
	if err := c.Reader.List(ctx, &list, client.HasLabels{LabelCABundle}); err != nil {
		return fmt.Errorf("listing the ClusterTrustBundles: %w", err)
	}
	var errs []error
	for i := range list.Items {
		ctb := &list.Items[i]
		k, ok := parseProfileRef(ctb.Annotations[AnnotationCABundleProfile])
		if !ok || k.Namespace != "" || ClusterTrustBundleName(k.Name) != ctb.Name {
			continue // not the operator's
		}
		err := c.Reader.Get(ctx, client.ObjectKey{Name: k.Name}, &scepv1alpha1.ClusterSCEPProfile{})
		switch {
		case err == nil:
			continue
		case !apierrors.IsNotFound(err):
			errs = append(errs, err)
			continue
		}
		log.FromContext(ctx).Info("deleting a ClusterTrustBundle whose profile is gone", "clusterTrustBundle", ctb.Name, "profile", k.String())
		if err := deleteIfPublished(ctx, c.Client, ctb, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
