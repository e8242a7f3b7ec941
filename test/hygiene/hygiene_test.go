package hygiene

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// The sweep must find what it is for: each planted exposure is reported,
// and a clean cluster reports nothing.
func TestSweepFindsWhatIsPlanted(t *testing.T) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme, scepv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	// A line from the middle: past the modulus, in the private exponent.
	lines := strings.Split(string(keyPEM), "\n")
	keyLine := lines[len(lines)/2]
	const password = "hunter2-challenge"
	secrets := []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "challenge"}, Data: map[string][]byte{"password": []byte(password + "\n"), "username": []byte("CORP\\svc-ndes")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "tls"}, Data: map[string][]byte{"tls.key": keyPEM, "tls.crt": []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")}},
	}
	clean := func() []client.Object {
		return append(append([]client.Object{}, secrets...),
			&corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "e1"}, Reason: "CredentialsRejected", Message: `NDES refused the credentials of CORP\svc-ndes`},
			&scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "p"}},
		)
	}
	sweep := func(objs []client.Object, logs string, extra ...Secret) Report {
		t.Helper()
		c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
		r, err := Sweep(t.Context(), c, logs, extra...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	if r := sweep(clean(), "profile is Ready; user CORP\\svc-ndes"); len(r.Findings) != 0 || r.Secrets < 10 || r.Events != 1 || r.Objects != 1 {
		t.Errorf("clean cluster: %s: %v", r, r.Findings)
	}
	planted := map[string]func() ([]client.Object, string, []Secret){
		"challenge in the logs": func() ([]client.Object, string, []Secret) {
			return clean(), "sending challenge " + password, nil
		},
		"challenge in an Event": func() ([]client.Object, string, []Secret) {
			return append(clean(), &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "e2"}, Message: "password " + password}), "", nil
		},
		"a key line in a status": func() ([]client.Object, string, []Secret) {
			p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "q"}}
			p.Status.Conditions = []metav1.Condition{{Type: "Ready", Message: "key " + keyLine}}
			return append(clean(), p), "", nil
		},
		"a key line from the private exponent in the logs": func() ([]client.Object, string, []Secret) {
			return clean(), "dump " + lines[8], nil
		},
		"a PEM header in a request annotation": func() ([]client.Object, string, []Secret) {
			cr := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "r", Annotations: map[string]string{"x": "-----BEGIN PRIVATE KEY-----"}}}
			return append(clean(), cr), "", nil
		},
		"a one-time password in the logs": func() ([]client.Object, string, []Secret) {
			return clean(), "got password 0123456789ABCDEF", []Secret{{Where: "NDES", Value: "0123456789ABCDEF"}}
		},
	}
	for name, plant := range planted {
		t.Run(name, func(t *testing.T) {
			objs, logs, extra := plant()
			r := sweep(objs, logs, extra...)
			if len(r.Findings) == 0 {
				t.Fatalf("not found: %s", r)
			}
			for _, f := range r.Findings {
				if strings.Contains(f, password) || strings.Contains(f, keyLine) {
					t.Errorf("the finding shows the secret: %s", f)
				}
			}
			t.Log(r.Findings)
		})
	}
}
