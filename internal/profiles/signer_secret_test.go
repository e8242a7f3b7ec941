package profiles

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// TestLoadSignerCaches: the signer Secret is read and parsed once, not per
// enrollment; ForgetSigner and Forget make the next load read it again.
func TestLoadSignerCaches(t *testing.T) {
	p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "corp", UID: "uid-corp"}}
	scheme := testScheme(t)
	gets := 0
	c := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(ownSignerSecret(t, p, "ns", scheme)).
		WithInterceptorFuncs(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			gets++
			return c.Get(ctx, key, obj, opts...)
		}}).Build()
	r := &Registry{Reader: c}
	ctx := context.Background()

	first, err := r.LoadSigner(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	again, err := r.LoadSigner(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if gets != 1 || again != first {
		t.Fatalf("second load: %d Secret reads, same signer %v; want 1 read and the cached signer", gets, again == first)
	}
	r.ForgetSigner(KeyOf(p))
	if _, err := r.LoadSigner(ctx, p); err != nil {
		t.Fatal(err)
	}
	r.Forget(KeyOf(p))
	if _, err := r.LoadSigner(ctx, p); err != nil {
		t.Fatal(err)
	}
	if gets != 3 {
		t.Fatalf("%d Secret reads after ForgetSigner and Forget, want 3", gets)
	}
}

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, scepv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return scheme
}

// ownSignerSecret is p's signer Secret as the profile controller creates it.
func ownSignerSecret(t *testing.T, p scepv1alpha1.Profile, ns string, scheme *runtime.Scheme) *corev1.Secret {
	t.Helper()
	data, err := NewSignerSecretData(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: SignerSecretName(p)}, Type: corev1.SecretTypeTLS, Data: data}
	if err := MarkSignerSecret(s, p, scheme); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCheckSignerSecret: only a Secret labelled with the profile's UID and
// controlled by that UID is the profile's signer Secret; the marks of a
// Secret from before the label make it a legacy one, and nothing else does.
func TestCheckSignerSecret(t *testing.T) {
	scheme := testScheme(t)
	ns := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "corp", UID: "uid-ns"}}
	cluster := &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: "corp", UID: "uid-cluster"}}
	other := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "corp", UID: "uid-deleted"}}
	otherCluster := &scepv1alpha1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: "lab", UID: "uid-lab"}}
	unmark := func(s *corev1.Secret) *corev1.Secret { delete(s.Labels, SignerForLabel); return s }
	tests := []struct {
		name   string
		p      scepv1alpha1.Profile
		secret *corev1.Secret
		own    bool
		legacy bool
	}{
		{name: "own, SCEPProfile", p: ns, secret: ownSignerSecret(t, ns, "shop", scheme), own: true},
		{name: "own, ClusterSCEPProfile", p: cluster, secret: ownSignerSecret(t, cluster, "scep-system", scheme), own: true},
		{name: "foreign, no marks", p: ns, secret: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "corp-scep-signer"}, Data: map[string][]byte{"k": []byte("v")}}},
		{name: "a deleted profile's of the same name", p: ns, secret: ownSignerSecret(t, other, "shop", scheme)},
		{name: "label forged, no owner", p: ns, secret: func() *corev1.Secret {
			s := ownSignerSecret(t, ns, "shop", scheme)
			s.OwnerReferences = nil
			return s
		}()},
		{name: "owner reference, not controller", p: ns, secret: func() *corev1.Secret {
			s := ownSignerSecret(t, ns, "shop", scheme)
			s.OwnerReferences[0].Controller = nil
			return s
		}()},
		{name: "legacy SCEPProfile Secret: managed-by and controller", p: ns, secret: unmark(ownSignerSecret(t, ns, "shop", scheme)), legacy: true},
		{name: "legacy ClusterSCEPProfile Secret: managed-by, no owner, its certificate", p: cluster, secret: func() *corev1.Secret {
			s := unmark(ownSignerSecret(t, cluster, "scep-system", scheme))
			s.OwnerReferences = nil
			return s
		}(), legacy: true},
		{name: "not legacy: managed-by with another profile's certificate", p: cluster, secret: func() *corev1.Secret {
			s := unmark(ownSignerSecret(t, otherCluster, "scep-system", scheme))
			s.OwnerReferences = nil
			return s
		}()},
		{name: "not legacy: no managed-by", p: ns, secret: func() *corev1.Secret {
			s := unmark(ownSignerSecret(t, ns, "shop", scheme))
			delete(s.Labels, ManagedByLabel)
			return s
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSignerSecret(tt.secret, tt.p)
			var conflict *SignerSecretConflictError
			switch {
			case tt.own && err != nil:
				t.Errorf("own Secret refused: %v", err)
			case !tt.own && !errors.As(err, &conflict):
				t.Errorf("CheckSignerSecret = %v, want a SignerSecretConflictError", err)
			case !tt.own && !strings.Contains(err.Error(), tt.secret.Namespace+"/"+tt.secret.Name):
				t.Errorf("message does not name the Secret: %v", err)
			}
			if got := IsLegacySignerSecret(tt.secret, tt.p); got != tt.legacy {
				t.Errorf("IsLegacySignerSecret = %v, want %v", got, tt.legacy)
			}
		})
	}
}

// TestLoadSignerRefusesForeignSecret: a Secret of the signer's name that
// the operator did not create for the profile is never used to sign, and
// the profile is queued for a check that reports it.
func TestLoadSignerRefusesForeignSecret(t *testing.T) {
	p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "corp", UID: "uid-corp"}}
	data, err := NewSignerSecretData(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).
		WithObjects(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: SignerSecretName(p)}, Data: data}).Build()
	r := &Registry{Reader: c}
	checks := r.Notifications("SCEPProfile")
	_, err = r.LoadSigner(context.Background(), p)
	var conflict *SignerSecretConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("LoadSigner = %v, want a SignerSecretConflictError", err)
	}
	select {
	case <-checks:
	default:
		t.Error("the profile was not queued for a check")
	}
}
