package e2e

import (
	"crypto/tls"
	"crypto/x509"
)

// tlsPair checks that certPEM and keyPEM belong together and returns the leaf.
func tlsPair(certPEM, keyPEM []byte) (*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(pair.Certificate[0])
}
