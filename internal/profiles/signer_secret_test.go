package profiles

import (
	"context"
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
	p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "corp"}}
	data, err := NewSignerSecretData(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	gets := 0
	c := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: SignerSecretName(p)}, Data: data}).
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
