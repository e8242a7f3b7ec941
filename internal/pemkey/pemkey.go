// Package pemkey reads private keys as Kubernetes Secrets and files hold
// them: one PEM block, PKCS #8, PKCS #1 (RSA) or SEC 1 (EC).
package pemkey

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
)

// Parse returns the private key in the first PEM block of b.
func Parse(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("holds no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, errors.New("is not a PKCS#8, PKCS#1 or EC private key")
}
