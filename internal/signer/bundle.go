package signer

import (
	"crypto/x509"
	"encoding/pem"
	"errors"

	"github.com/cert-manager/issuer-lib/controllers/signer"
)

// bundleOf turns the chain (leaf first) into issuer-lib's PEM bundle: the
// chain without a self-signed root, and that root (or the last issuer) as CA.
func bundleOf(chain []*x509.Certificate) (signer.PEMBundle, error) {
	if len(chain) == 0 {
		return signer.PEMBundle{}, errors.New("the server returned no certificate")
	}
	var b signer.PEMBundle
	for i, c := range chain {
		p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		selfSigned := string(c.RawIssuer) == string(c.RawSubject)
		if i > 0 && selfSigned {
			b.CAPEM = p
			break
		}
		b.ChainPEM = append(b.ChainPEM, p...)
		if i == len(chain)-1 && i > 0 {
			b.CAPEM = p
		}
	}
	return b, nil
}
