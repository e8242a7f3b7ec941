package controllers_test

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// TestSignerSecretNotTakenOver: a Secret that already has the name of a
// profile's signer Secret, and that the operator did not create for that
// profile, is left exactly as it was (same data, labels and owners, not
// written at all); the profile is not Ready with reason
// SignerSecretConflict, a message naming the Secret and what to do, and a
// Warning Event; nothing reaches the SCEP server. Once the Secret is
// removed, the operator creates its own and the profile becomes Ready.
func TestSignerSecretNotTakenOver(t *testing.T) {
	ns := namespace(t)
	startManager(t)
	c := apiServer(t).Client
	for _, tt := range []struct {
		name    string
		profile func(url string) scepv1alpha1.Profile
		// foreign returns the Secret in the way.
		foreign func(p scepv1alpha1.Profile, secretNS string) *corev1.Secret
	}{
		{
			name: "SCEPProfile, a tenant's Secret",
			profile: func(url string) scepv1alpha1.Profile {
				return &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"},
					Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: url}}
			},
			foreign: func(p scepv1alpha1.Profile, secretNS string) *corev1.Secret {
				return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secretNS, Name: profiles.SignerSecretName(p), Labels: map[string]string{"app": "billing"}},
					Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"tls.crt": []byte("not a certificate"), "db-password": []byte("tenant data")}}
			},
		},
		{
			name: "SCEPProfile, labelled for it but owned by nobody",
			profile: func(url string) scepv1alpha1.Profile {
				return &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "forged"},
					Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: url}}
			},
			// The label names a UID the profile does not have yet, like one
			// left by a deleted profile of the same name.
			foreign: func(p scepv1alpha1.Profile, secretNS string) *corev1.Secret {
				return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secretNS, Name: profiles.SignerSecretName(p),
					Labels: map[string]string{profiles.ManagedByLabel: profiles.ManagedBy, profiles.SignerForLabel: "0b5e7f3a-0000-4000-8000-000000000000"}},
					Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"tls.key": []byte("someone else's key")}}
			},
		},
		{
			name: "ClusterSCEPProfile, a Secret of the cluster resource namespace",
			profile: func(url string) scepv1alpha1.Profile {
				return &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: ns + "-taken"},
					Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: url}}
			},
			foreign: func(p scepv1alpha1.Profile, secretNS string) *corev1.Secret {
				return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secretNS, Name: profiles.SignerSecretName(p)},
					Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"username": []byte("ndes-admin")}}
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := scepserver.Start(t, scepserver.Behavior{})
			p := tt.profile(srv.URL)
			secretNS := p.GetNamespace()
			if secretNS == "" {
				secretNS = clusterResourceNamespace
			}
			foreign := tt.foreign(p, secretNS)
			if err := c.Create(t.Context(), foreign); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(context.Background(), foreign) })
			before := foreign.DeepCopy()
			if err := c.Create(t.Context(), p); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(context.Background(), p) })

			cond := waitProfile(t, p, metav1.ConditionFalse, 30*time.Second)
			if cond.Reason != controllers.ReasonSignerSecretConflict {
				t.Fatalf("Ready reason = %s (%s), want %s", cond.Reason, cond.Message, controllers.ReasonSignerSecretConflict)
			}
			for _, want := range []string{secretNS + "/" + foreign.Name, "delete or rename"} {
				if !strings.Contains(cond.Message, want) {
					t.Errorf("Ready message %q does not say %q", cond.Message, want)
				}
			}
			if p.GetStatus().SignerSecretName != "" {
				t.Errorf("status.signerSecretName = %q for a Secret that is not the profile's", p.GetStatus().SignerSecretName)
			}
			eventually(t, 10*time.Second, "a Warning Event "+controllers.ReasonSignerSecretConflict, func() (bool, string) {
				evs, err := profileEvents(t, p.GetNamespace(), p.GetName())
				if err != nil {
					return false, err.Error()
				}
				for _, e := range evs {
					if e.Reason == controllers.ReasonSignerSecretConflict && e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, foreign.Name) {
						return true, ""
					}
				}
				return false, "not yet"
			})

			// A second check changes nothing either.
			recheck(t, p)
			var after corev1.Secret
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(foreign), &after); err != nil {
				t.Fatal(err)
			}
			if after.ResourceVersion != before.ResourceVersion {
				t.Errorf("the Secret was written (resourceVersion %s -> %s)", before.ResourceVersion, after.ResourceVersion)
			}
			if len(after.OwnerReferences) != 0 || after.Type != before.Type || !maps.Equal(after.Labels, before.Labels) || !equalData(after.Data, before.Data) {
				t.Errorf("the Secret changed: owners %v, type %s, labels %v, data keys %d", after.OwnerReferences, after.Type, after.Labels, len(after.Data))
			}
			if reqs := srv.HTTPRequests(); len(reqs) != 0 {
				t.Errorf("%d requests reached the SCEP server, want none: %+v", len(reqs), reqs)
			}

			// The control: the Secret out of the way, the profile works.
			if err := c.Delete(t.Context(), foreign); err != nil {
				t.Fatal(err)
			}
			recheck(t, p)
			waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
			var own corev1.Secret
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(foreign), &own); err != nil {
				t.Fatal(err)
			}
			if own.Labels[profiles.SignerForLabel] != string(p.GetUID()) || !metav1.IsControlledBy(&own, p) {
				t.Errorf("the operator's signer Secret: labels %v, owners %v", own.Labels, own.OwnerReferences)
			}
			t.Cleanup(func() { _ = c.Delete(context.Background(), &own) })
			cr := request(t, ns, "after-"+p.GetName(), refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "app"}}, rsaKey(2048, 0)), nil)
			setApproval(t, cr, true)
			issued(t, waitRequest(t, cr, 60*time.Second), srv.CA)
		})
	}
}

// TestSignerSecretReusedAcrossRestarts: the operator's own signer Secret
// is used as it is by the next operator process (same key, not written);
// one made by an operator from before the signer-for label (the
// SCEPProfile's controller ownerReference, no label) is labelled and kept,
// key and all.
func TestSignerSecretReusedAcrossRestarts(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := scepserver.Start(t, scepserver.Behavior{})
	c := apiServer(t).Client
	spec := scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL}

	// A legacy Secret, as the operator wrote it before: made before any
	// manager runs, for a profile created first.
	legacy := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"}, Spec: spec}
	if err := c.Create(t.Context(), legacy); err != nil {
		t.Fatal(err)
	}
	data, err := profiles.NewSignerSecretData(legacy, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: profiles.SignerSecretName(legacy),
		Labels:          map[string]string{profiles.ManagedByLabel: profiles.ManagedBy},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: scepv1alpha1.GroupVersion.String(), Kind: "SCEPProfile", Name: legacy.Name, UID: legacy.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
	}, Type: corev1.SecretTypeTLS, Data: data}
	if err := c.Create(t.Context(), old); err != nil {
		t.Fatal(err)
	}

	m := startManager(t)
	fresh := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fresh"}, Spec: spec}
	if err := c.Create(t.Context(), fresh); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, legacy, metav1.ConditionTrue, 30*time.Second)
	waitProfile(t, fresh, metav1.ConditionTrue, 30*time.Second)
	read := func(p scepv1alpha1.Profile) *corev1.Secret {
		t.Helper()
		var s corev1.Secret
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: profiles.SignerSecretName(p)}, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	adopted := read(legacy)
	if adopted.Labels[profiles.SignerForLabel] != string(legacy.UID) || !metav1.IsControlledBy(adopted, legacy) || !equalData(adopted.Data, data) {
		t.Errorf("legacy signer Secret: labels %v, owners %v, data kept %v", adopted.Labels, adopted.OwnerReferences, equalData(adopted.Data, data))
	}
	own := read(fresh)

	m.stop()
	checked := map[string]time.Time{}
	for _, p := range []*scepv1alpha1.SCEPProfile{legacy, fresh} {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
			t.Fatal(err)
		}
		checked[p.Name] = p.Status.LastCheckTime.Time
	}
	// lastCheckTime has a resolution of one second: start the next manager
	// in the next second, so that its checks are told apart.
	last := checked["legacy"]
	if checked["fresh"].After(last) {
		last = checked["fresh"]
	}
	time.Sleep(time.Until(last.Add(time.Second)))
	startManager(t)
	for _, p := range []*scepv1alpha1.SCEPProfile{legacy, fresh} {
		eventually(t, 30*time.Second, "the new manager to check "+p.Name, func() (bool, string) {
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
				return false, err.Error()
			}
			lc := p.Status.LastCheckTime
			return lc != nil && lc.After(checked[p.Name]), "no check by the new manager yet"
		})
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
		cr := request(t, ns, "after-restart-"+p.Name, refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: p.Name}}, rsaKey(2048, 1)), nil)
		setApproval(t, cr, true)
		issued(t, waitRequest(t, cr, 60*time.Second), srv.CA)
	}
	for _, was := range []*corev1.Secret{adopted, own} {
		now := read(&scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: strings.TrimSuffix(was.Name, "-scep-signer")}})
		if now.ResourceVersion != was.ResourceVersion || !equalData(now.Data, was.Data) {
			t.Errorf("signer Secret %s was rewritten after the restart (resourceVersion %s -> %s)", was.Name, was.ResourceVersion, now.ResourceVersion)
		}
	}
}

func equalData(a, b map[string][]byte) bool { return maps.EqualFunc(a, b, bytes.Equal) }
