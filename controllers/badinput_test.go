package controllers_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/micromdm"
)

// TestBadInput: profiles whose Secrets are missing or hold the wrong keys,
// and requests a profile cannot take (wrong key types and sizes, requests
// that are no CSR, Rebuild requests without their Certificate), are each
// refused with a message that names what to change: a profile's Ready
// condition (with a Warning Event), a request's Failed condition. Nothing
// reaches the SCEP server. (The API server refuses the malformed profiles
// before the operator sees them: api/v1alpha1/validation_test.go.)
func TestBadInput(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	const password = "bad-input-s3cret"
	srv := micromdm.Start(t, micromdm.Options{Challenge: password})
	startManager(t)
	c := apiServer(t).Client

	notSCEP := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notSCEP.Close)

	secret := func(name string, data map[string]string) {
		t.Helper()
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		if err := c.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	secret("challenge-typo", map[string]string{"pasword": password})
	secret("challenge-empty", map[string]string{"password": ""})
	secret("challenge-custom", map[string]string{"password": password})
	secret("bundle-no-ca", map[string]string{"tls.crt": "x"})
	secret("bundle-not-pem", map[string]string{"ca.crt": "not a certificate"})
	secret("ndes-no-password", map[string]string{"username": `CORP\svc-ndes`})
	secret("good-challenge", map[string]string{"password": password})

	static := func(name, key string) scepv1alpha1.Challenge {
		return scepv1alpha1.Challenge{AllowUnpinnedHTTP: true, Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: name, Key: key}}
	}
	rebuild := func(ch scepv1alpha1.Challenge) scepv1alpha1.SCEPProfileSpec {
		return scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL, CSRMode: scepv1alpha1.CSRModeRebuild, Challenge: ch}
	}
	dynamic := func(credentials string) scepv1alpha1.SCEPProfileSpec {
		return scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL + "/certsrv/mscep/mscep.dll", CSRMode: scepv1alpha1.CSRModeRebuild, Challenge: scepv1alpha1.Challenge{AllowUnpinnedHTTP: true,
			Type: scepv1alpha1.ChallengeDynamic,
			Dynamic: &scepv1alpha1.DynamicChallenge{AllowPlainHTTP: true, URL: srv.URL + "/certsrv/mscep_admin/", Auth: "NTLM",
				CredentialsSecretRef: scepv1alpha1.LocalObjectReference{Name: credentials}},
		}}
	}
	withBundle := func(name, key string) scepv1alpha1.SCEPProfileSpec {
		return scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: "https://127.0.0.1:1/scep", TLS: &scepv1alpha1.TLSConfig{CABundleSecretRef: &scepv1alpha1.SecretKeySelector{Name: name, Key: key}}}
	}

	profileCases := []struct {
		name    string
		spec    scepv1alpha1.SCEPProfileSpec
		reason  string
		message []string
	}{
		{"challenge-secret-missing", rebuild(static("no-such-secret", "")), controllers.ReasonSecretNotFound, []string{"Secret " + ns + "/no-such-secret not found"}},
		{"challenge-key-typo", rebuild(static("challenge-typo", "")), controllers.ReasonSecretNotFound, []string{ns + "/challenge-typo", `no key "password"`, "it has pasword"}},
		{"challenge-key-empty", rebuild(static("challenge-empty", "")), controllers.ReasonSecretNotFound, []string{ns + "/challenge-empty", `empty "password"`}},
		{"challenge-custom-key-missing", rebuild(static("challenge-custom", "token")), controllers.ReasonSecretNotFound, []string{`no key "token"`, "it has password"}},
		{"ca-bundle-secret-missing", withBundle("no-such-bundle", ""), controllers.ReasonSecretNotFound, []string{"Secret " + ns + "/no-such-bundle not found"}},
		{"ca-bundle-key-missing", withBundle("bundle-no-ca", ""), controllers.ReasonSecretNotFound, []string{`no key "ca.crt"`, "it has tls.crt"}},
		{"ca-bundle-not-pem", withBundle("bundle-not-pem", ""), controllers.ReasonInvalidSpec, []string{"caBundleSecretRef", "no PEM certificate"}},
		{"ndes-credentials-missing", dynamic("no-such-credentials"), controllers.ReasonSecretNotFound, []string{"Secret " + ns + "/no-such-credentials not found"}},
		{"ndes-credentials-no-password", dynamic("ndes-no-password"), controllers.ReasonSecretNotFound, []string{`no key "password"`, "it has username"}},
		// A URL that answers, but not SCEP (a web server's 404).
		{"not-a-scep-server", scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: notSCEP.URL + "/scep"}, controllers.ReasonServerError, []string{"404", "nothing serves SCEP at this URL"}},
	}

	profiles := make([]*scepv1alpha1.SCEPProfile, len(profileCases))
	for i, tc := range profileCases {
		profiles[i] = &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.name}, Spec: tc.spec}
		if err := c.Create(t.Context(), profiles[i]); err != nil {
			t.Fatalf("%s: the API server refused the profile (the operator should): %v", tc.name, err)
		}
	}

	// Requests: one profile that takes RSA-2048 only, one in Rebuild mode.
	strict := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "strict"}, Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL, KeySize: 2048}}
	rebuilding := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rebuilding"}, Spec: rebuild(static("good-challenge", ""))}
	for _, p := range []*scepv1alpha1.SCEPProfile{strict, rebuilding} {
		if err := c.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // the point: a key too small
	if err != nil {
		t.Fatal(err)
	}
	good := func(name string) []byte {
		return csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: name}}, rsaKey(2048, 0))
	}
	tampered := func() []byte {
		block, _ := pem.Decode(good("tampered"))
		der := block.Bytes
		der[len(der)-10] ^= 0xff // inside the signature
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.CA.Raw})
	requestCases := []struct {
		name        string
		profile     *scepv1alpha1.SCEPProfile
		csr         []byte
		annotations map[string]string
		message     []string
	}{
		{"ecdsa-key-not-allowed", strict, csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "ec"}}, ecKey), nil, []string{"ECDSA", "allowECDSAKeys"}},
		{"rsa-1024", strict, csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "small"}}, small), nil, []string{"1024", "keySize", "2048"}},
		{"not-pem", strict, []byte("this is not a CSR"), nil, []string{"spec.request holds no PEM certificate request"}},
		{"a-certificate-not-a-csr", strict, certPEM, nil, []string{`spec.request holds a PEM "CERTIFICATE" block, not a CERTIFICATE REQUEST`}},
		{"csr-signature-broken", strict, tampered(), nil, []string{"spec.request is not signed by its own key"}},
		{"rebuild-without-certificate", rebuilding, good("bare"), nil, []string{"csrMode Rebuild needs a request made by a Certificate", "controller ownerReference"}},
		{"rebuild-certificate-missing", rebuilding, good("orphan"), map[string]string{cmapi.CertificateNameKey: "gone"}, []string{"Certificate " + ns + "/gone does not exist"}},
	}
	requests := make([]*cmapi.CertificateRequest, len(requestCases))
	for i, tc := range requestCases {
		requests[i] = request(t, ns, tc.name, refTo(tc.profile), tc.csr, tc.annotations)
		setApproval(t, requests[i], true)
	}

	for i, tc := range profileCases {
		t.Run("profile/"+tc.name, func(t *testing.T) {
			cond := waitProfile(t, profiles[i], metav1.ConditionFalse, 30*time.Second)
			t.Logf("Ready=False %s: %s", cond.Reason, cond.Message)
			if cond.Reason != tc.reason {
				t.Errorf("reason %s, want %s", cond.Reason, tc.reason)
			}
			for _, part := range tc.message {
				if !strings.Contains(cond.Message, part) {
					t.Errorf("message lacks %q", part)
				}
			}
			eventually(t, 15*time.Second, "a Warning Event", func() (bool, string) {
				evs, err := profileEvents(t, ns, profiles[i].Name)
				if err != nil {
					return false, err.Error()
				}
				for _, e := range evs {
					if e.Type == corev1.EventTypeWarning && e.Reason == tc.reason {
						return true, ""
					}
				}
				return false, "none yet"
			})
		})
	}
	var wg sync.WaitGroup
	got := make([]*cmapi.CertificateRequest, len(requestCases))
	errs := make([]string, len(requestCases))
	for i := range requestCases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = waitFinished(t, c, requests[i], 60*time.Second)
		}()
	}
	wg.Wait()
	for i, tc := range requestCases {
		t.Run("request/"+tc.name, func(t *testing.T) {
			if errs[i] != "" {
				t.Fatal(errs[i])
			}
			ready := crCondition(got[i], cmapi.CertificateRequestConditionReady)
			t.Logf("Ready=%s %s: %s", ready.Status, ready.Reason, ready.Message)
			if ready.Status != cmmeta.ConditionFalse || ready.Reason != cmapi.CertificateRequestReasonFailed {
				t.Errorf("Ready = %s %s, want False Failed", ready.Status, ready.Reason)
			}
			for _, part := range tc.message {
				if !strings.Contains(ready.Message, part) {
					t.Errorf("message lacks %q", part)
				}
			}
		})
	}
	if n := srv.Requests("PKIOperation"); n != 0 {
		t.Errorf("the SCEP server saw %d PKIOperations; bad input must never reach it", n)
	}
}
