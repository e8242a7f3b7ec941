package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/scep-operator/scep-operator/internal/metricsauth"
)

// The names of a kubernetes.io/tls Secret's keys, as files of a mounted
// Secret in --metrics-cert-path.
const (
	metricsCertName = "tls.crt"
	metricsKeyName  = "tls.key"
)

// metricsOptions configures the /metrics endpoint as kubebuilder's scaffold
// does. Secure (the default) serves HTTPS and lets a client in only if the
// API server accepts its bearer token (TokenReview) and allows it get on the
// non-resource URL /metrics (SubjectAccessReview): the metrics name every
// profile and its server, which a namespace user should not read. The
// certificate comes from certPath when given, else controller-runtime makes a
// self-signed one. Insecure serves plain HTTP to anyone who reaches the port.
func metricsOptions(addr string, secure bool, certPath string) (metricsserver.Options, error) {
	if addr == "" {
		addr = ":8443"
		if !secure {
			addr = ":8080"
		}
	}
	opts := metricsserver.Options{BindAddress: addr}
	if !secure || addr == "0" {
		return opts, nil
	}
	opts.SecureServing = true
	opts.FilterProvider = metricsauth.WithAuthenticationAndAuthorization
	// HTTP/2 off, as in kubebuilder's scaffold: it is not needed for a
	// scrape, and it has been the way into HTTP/2 stream-reset and
	// CONTINUATION flood vulnerabilities.
	opts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	if certPath != "" {
		// controller-runtime falls back to a self-signed certificate when
		// the files are missing; a path that was given and is wrong should
		// stop the manager instead.
		for _, name := range []string{metricsCertName, metricsKeyName} {
			if _, err := os.Stat(filepath.Join(certPath, name)); err != nil {
				return opts, fmt.Errorf("--metrics-cert-path: %w (the directory must hold %s and %s, e.g. a mounted kubernetes.io/tls Secret)", err, metricsCertName, metricsKeyName)
			}
		}
		opts.CertDir, opts.CertName, opts.KeyName = certPath, metricsCertName, metricsKeyName
	}
	return opts, nil
}
