//go:build tools

// Package tools pins helm (helm.sh/helm/v3) for hack/helm.sh, which builds
// bin/helm for `helm lint` and `helm template` in test/chart.
// It is a scratch module, separate from the operator's own go.mod.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
