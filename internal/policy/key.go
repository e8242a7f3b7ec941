package policy

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

func checkKey(spec *scepv1alpha1.SCEPProfileSpec, csr *x509.CertificateRequest) *Violation {
	size := int(spec.KeySize)
	if size == 0 {
		size = 2048
	}
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() != size {
			return violation("spec.keySize", "the key is RSA %d; the profile requires RSA %d (set the Certificate's privateKey.size)", k.N.BitLen(), size)
		}
	case *ecdsa.PublicKey:
		if !spec.AllowECDSAKeys {
			return violation("spec.allowECDSAKeys", "the key is ECDSA %s; the profile requires RSA %d (set the Certificate's privateKey.algorithm: RSA)", k.Curve.Params().Name, size)
		}
	default:
		alg := csr.PublicKeyAlgorithm.String()
		if csr.PublicKeyAlgorithm == x509.UnknownPublicKeyAlgorithm {
			alg = "of an unknown algorithm"
		}
		return violation("spec.keySize", "the key is %s; the profile requires RSA %d (set the Certificate's privateKey.algorithm: RSA)", alg, size)
	}
	return nil
}
