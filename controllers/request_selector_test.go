package controllers_test

import (
	"context"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
)

// TestCacheHoldsNoForeignRequest: against cert-manager's CRDs (which
// declare spec.issuerRef.group a selectable field), the operator's cache
// never holds a request for another issuer, not even trimmed: the API
// server does not send it. A cache with the fallback options (an API
// server that cannot select) does hold it, trimmed.
func TestCacheHoldsNoForeignRequest(t *testing.T) {
	e := apiServer(t)
	ctx := t.Context()
	if err := controllers.ServerSelectsRequests(ctx, e.Client); err != nil {
		t.Fatalf("the API server with cert-manager's CRDs cannot select requests by issuer group: %v", err)
	}
	ns := namespace(t)
	csr := csrPEM(t, scep.CSRTemplate{DNSNames: []string{"selector.example"}}, rsaKey(2048, 0))
	mk := func(name, group string) *cmapi.CertificateRequest {
		cr := &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       cmapi.CertificateRequestSpec{IssuerRef: cmmeta.IssuerReference{Group: group, Kind: "Issuer", Name: "x"}, Request: csr},
		}
		if err := e.Client.Create(ctx, cr); err != nil {
			t.Fatal(err)
		}
		return cr
	}
	ours := mk("ours", "scep.certificates.dev")
	foreign := mk("foreign", "cert-manager.io")
	lookalike := mk("lookalike", "scep.certificates.dev.example")

	for _, tc := range []struct {
		name        string
		opts        cache.Options
		holdForeign bool
	}{{"CacheOptions", controllers.CacheOptions(), false}, {"UnselectedCacheOptions", controllers.UnselectedCacheOptions(), true}} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Scheme = e.Scheme
			opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
			c, err := cache.New(e.Config, opts)
			if err != nil {
				t.Fatal(err)
			}
			// The subtest's context ends the cache with the subtest.
			go func() { _ = c.Start(t.Context()) }()
			syncCtx, stop := context.WithTimeout(t.Context(), 30*time.Second)
			defer stop()
			if !c.WaitForCacheSync(syncCtx) {
				t.Fatal("the cache did not sync")
			}
			var got cmapi.CertificateRequest
			if err := c.Get(ctx, client.ObjectKeyFromObject(ours), &got); err != nil {
				t.Fatalf("our request is not in the cache: %v", err)
			}
			if string(got.Spec.Request) != string(csr) {
				t.Error("our request was trimmed")
			}
			for _, cr := range []*cmapi.CertificateRequest{foreign, lookalike} {
				err := c.Get(ctx, client.ObjectKeyFromObject(cr), &got)
				switch {
				case tc.holdForeign && err != nil:
					t.Errorf("%s: the fallback cache lost it: %v", cr.Name, err)
				case tc.holdForeign && len(got.Spec.Request) != 0:
					t.Errorf("%s: the fallback cache holds it untrimmed", cr.Name)
				case !tc.holdForeign && !apierrors.IsNotFound(err):
					t.Errorf("%s, a request for issuer group %s: in the cache (err %v), want NotFound", cr.Name, cr.Spec.IssuerRef.Group, err)
				}
			}
		})
	}
}
