package install

import (
	"crypto"
	"errors"
	"os"
	"path/filepath"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/stack"
)

// Samples are config/samples' SCEPProfile (Rebuild, Static challenge), its
// challenge Secret and the Certificate that names it, as a user applies
// them after editing the server's address, pin and password.
type Samples struct {
	Profile     *scepv1alpha1.SCEPProfile
	Secret      *corev1.Secret
	Certificate *cmapi.Certificate
}

// ReadSamples reads config/samples and points them at srv, in namespace.
func ReadSamples(root, namespace string, srv *micromdm.Server, challenge string) (*Samples, error) {
	docs, err := os.ReadFile(filepath.Join(root, "config", "samples", "scep_v1alpha1_scepprofile.yaml"))
	if err != nil {
		return nil, err
	}
	objs, err := stack.DecodeYAML(docs)
	if err != nil {
		return nil, err
	}
	s := &Samples{Profile: &scepv1alpha1.SCEPProfile{}, Secret: &corev1.Secret{}, Certificate: &cmapi.Certificate{}}
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		switch o.GetKind() {
		case "SCEPProfile":
			err = yaml.Unmarshal(b, s.Profile)
		case "Secret":
			err = yaml.Unmarshal(b, s.Secret)
		}
		if err != nil {
			return nil, err
		}
	}
	crtYAML, err := os.ReadFile(filepath.Join(root, "config", "samples", "certificate.yaml"))
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(crtYAML, s.Certificate); err != nil {
		return nil, err
	}
	if s.Profile.Name == "" || s.Secret.Name == "" || s.Certificate.Name == "" {
		return nil, errors.New("config/samples lack the profile, Secret or Certificate")
	}
	// The samples name a cluster's servers; here they run on this machine.
	s.Profile.Namespace, s.Secret.Namespace, s.Certificate.Namespace = namespace, namespace, namespace
	s.Profile.Spec.URL = srv.URL
	s.Profile.Spec.CAFingerprint = "sha256:" + scep.FingerprintOf(srv.CA, crypto.SHA256).Hex()
	s.Secret.StringData = map[string]string{"password": challenge}
	s.Certificate.Spec.CommonName = s.Certificate.Name + "." + namespace
	s.Certificate.Spec.DNSNames = []string{s.Certificate.Name + "." + namespace + ".svc.cluster.local"}
	return s, nil
}

// CertificateNamed is the sample Certificate under another name (and
// Secret), for a further issuance.
func (s *Samples) CertificateNamed(name string) *cmapi.Certificate {
	c := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Certificate.Namespace, Name: name},
		Spec:       *s.Certificate.Spec.DeepCopy(),
	}
	c.Spec.SecretName = name + "-tls"
	c.Spec.CommonName = name + "." + c.Namespace
	c.Spec.DNSNames = []string{name + "." + c.Namespace + ".svc.cluster.local"}
	return c
}
