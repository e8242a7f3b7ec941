package profiles

import (
	"crypto"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
)

// floorOf is the profile's crypto floor for its SCEP client: spec.cryptoFloor
// with the API's defaults (DES3, SHA1) for what it leaves unset.
func floorOf(spec *scepv1alpha1.SCEPProfileSpec) *scepclient.Floor {
	f := scepclient.DefaultFloor
	f.CipherField, f.DigestField = "spec.cryptoFloor.contentEncryption", "spec.cryptoFloor.digest"
	if cf := spec.CryptoFloor; cf != nil {
		switch cf.ContentEncryption {
		case "DES":
			f.Cipher = scep.CipherDES
		case "AES":
			f.Cipher = scep.CipherAES128CBC
		}
		switch cf.Digest {
		case "SHA256":
			f.Digest = crypto.SHA256
		case "SHA512":
			f.Digest = crypto.SHA512
		}
	}
	return &f
}
