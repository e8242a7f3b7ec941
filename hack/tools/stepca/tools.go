//go:build tools

// Package tools pins step-ca (github.com/smallstep/certificates) for hack/step-ca.sh.
// It is a scratch module, separate from the operator's own go.mod.
package tools

import (
	_ "github.com/smallstep/certificates/cmd/step-ca"
)
