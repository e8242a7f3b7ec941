package profiles

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/egress"
)

const pinHex = "3b6c8a1e0f2d4c5b6a7e8f901a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"

func static(allowUnpinned bool) scepv1alpha1.Challenge {
	return scepv1alpha1.Challenge{Type: scepv1alpha1.ChallengeStatic, AllowUnpinnedHTTP: allowUnpinned, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: "pw"}}
}

func dynamic(url string, allowPlain bool) scepv1alpha1.Challenge {
	return scepv1alpha1.Challenge{Type: scepv1alpha1.ChallengeDynamic, Dynamic: &scepv1alpha1.DynamicChallenge{
		URL: url, Auth: "Basic", AllowPlainHTTP: allowPlain, CredentialsSecretRef: scepv1alpha1.LocalObjectReference{Name: "ndes"}}}
}

// TestCheckTransport is finding 8 at run time, for objects stored before
// the API refused them: a challenge over http needs a pin or an explicit
// allowUnpinnedHTTP, an http admin page an explicit allowPlainHTTP.
func TestCheckTransport(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  scepv1alpha1.SCEPProfileSpec
		field string // "" means accepted
	}{
		{name: "no challenge over http", spec: scepv1alpha1.SCEPProfileSpec{URL: "http://ndes/scep"}},
		{name: "Static over http, unpinned", spec: scepv1alpha1.SCEPProfileSpec{URL: "http://ndes/scep", Challenge: static(false)}, field: "spec.caFingerprint"},
		{name: "Static over HTTP (upper case), unpinned", spec: scepv1alpha1.SCEPProfileSpec{URL: "HTTP://ndes/scep", Challenge: static(false)}, field: "spec.caFingerprint"},
		{name: "Static over http, pinned", spec: scepv1alpha1.SCEPProfileSpec{URL: "http://ndes/scep", CAFingerprint: pinHex, Challenge: static(false)}},
		{name: "Static over http, unpinned by choice", spec: scepv1alpha1.SCEPProfileSpec{URL: "http://ndes/scep", Challenge: static(true)}},
		{name: "Static over https, unpinned", spec: scepv1alpha1.SCEPProfileSpec{URL: "https://ndes/scep", Challenge: static(false)}},
		{name: "Dynamic over http, unpinned", spec: scepv1alpha1.SCEPProfileSpec{URL: "http://ndes/scep", Challenge: dynamic("https://ndes/certsrv/mscep_admin/", false)}, field: "spec.caFingerprint"},
		{name: "Dynamic, http admin page", spec: scepv1alpha1.SCEPProfileSpec{URL: "https://ndes/scep", Challenge: dynamic("http://ndes/certsrv/mscep_admin/", false)}, field: "spec.challenge.dynamic.url"},
		{name: "Dynamic, http admin page by choice", spec: scepv1alpha1.SCEPProfileSpec{URL: "https://ndes/scep", Challenge: dynamic("http://ndes/certsrv/mscep_admin/", true)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTransport(&tc.spec)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *SpecError
			if !errors.As(err, &se) || se.Field != tc.field {
				t.Fatalf("CheckTransport = %v, want a SpecError on %s", err, tc.field)
			}
		})
	}
}

func testRegistry(t *testing.T, objs ...*corev1.Secret) *Registry {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(scheme)
	for _, o := range objs {
		b = b.WithObjects(o)
	}
	return &Registry{Reader: b.Build()}
}

// TestRegistryRefusesBeforeSending: a profile CheckTransport refuses gets
// no SCEP client and no NDES client: nothing is sent.
func TestRegistryRefusesBeforeSending(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	r := testRegistry(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ndes"}, Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}})
	p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "old"}, Spec: scepv1alpha1.SCEPProfileSpec{URL: srv.URL, Challenge: static(false)}}
	if _, err := r.Discover(context.Background(), p); err == nil || !strings.Contains(err.Error(), "spec.caFingerprint") {
		t.Errorf("Discover = %v", err)
	}
	p.Spec = scepv1alpha1.SCEPProfileSpec{URL: strings.Replace(srv.URL, "http:", "https:", 1), Challenge: dynamic(srv.URL+"/certsrv/mscep_admin/", false)}
	if _, err := r.DynamicPassword(context.Background(), p); err == nil || !strings.Contains(err.Error(), "spec.challenge.dynamic.url") {
		t.Errorf("DynamicPassword = %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server saw %d requests", n)
	}
}

// TestDynamicTLSIsIndependent: the NDES admin page is trusted by
// challenge.dynamic.tls, not by the SCEP url's tls.
func TestDynamicTLSIsIndependent(t *testing.T) {
	admin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "<P> The enrollment challenge password is: <B> 0A1B2C3D4E5F6A7B </B>")
	}))
	defer admin.Close()
	bundle := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: admin.Certificate().Raw}))
	r := testRegistry(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ndes"}, Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}})
	spec := func(scepTLS, adminTLS *scepv1alpha1.TLSConfig) *scepv1alpha1.SCEPProfile {
		ch := dynamic(admin.URL+"/certsrv/mscep_admin/", false)
		ch.Dynamic.TLS = adminTLS
		return &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"},
			Spec: scepv1alpha1.SCEPProfileSpec{URL: "https://scep.example/scep", TLS: scepTLS, CAFingerprint: pinHex, Challenge: ch}}
	}
	// The admin page's CA given for the SCEP url only: not trusted for the page.
	if _, err := r.DynamicPassword(context.Background(), spec(&scepv1alpha1.TLSConfig{CABundle: bundle}, nil)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("DynamicPassword trusting the SCEP url's bundle = %v, want a TLS error", err)
	}
	pw, err := r.DynamicPassword(context.Background(), spec(nil, &scepv1alpha1.TLSConfig{CABundle: bundle}))
	if err != nil || pw != "0A1B2C3D4E5F6A7B" {
		t.Fatalf("DynamicPassword with dynamic.tls = %q, %v", pw, err)
	}
	if _, err := r.DynamicPassword(context.Background(), spec(nil, &scepv1alpha1.TLSConfig{CABundle: "not PEM"})); err == nil || !strings.Contains(err.Error(), "spec.challenge.dynamic.tls.caBundle") {
		t.Errorf("DynamicPassword with a bad dynamic.tls bundle = %v", err)
	}
	// The egress policy applies to the admin page too, as a fault of the profile.
	r.Egress, err = egress.Parse("", "127.0.0.0/8,::1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.DynamicPassword(context.Background(), spec(nil, &scepv1alpha1.TLSConfig{CABundle: bundle}))
	var se *SpecError
	if !egress.IsRefused(err) || !errors.As(err, &se) || se.Field != "spec.challenge.dynamic.url" {
		t.Errorf("DynamicPassword to a refused address = %v, want a refusal as a SpecError", err)
	}
}

// TestDiscoverRefusedDestination: a url whose name resolves to a refused
// address is a fault of the profile's url (requests wait for the profile
// to be fixed), and nothing reaches the server.
func TestDiscoverRefusedDestination(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	r := testRegistry(t)
	var err error
	if r.Egress, err = egress.Parse("", "127.0.0.0/8,::1"); err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/scep"
	p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}, Spec: scepv1alpha1.SCEPProfileSpec{URL: url}}
	_, err = r.Discover(context.Background(), p)
	var se *SpecError
	if !egress.IsRefused(err) || !errors.As(err, &se) || se.Field != "spec.url" {
		t.Fatalf("Discover = %v, want a refusal as a SpecError on spec.url", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server saw %d requests", n)
	}
}
