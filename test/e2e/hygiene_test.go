package e2e

import (
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/test/hygiene"
	"github.com/scep-operator/scep-operator/test/stack"
)

// operatorLogs keeps what the operator logged during the e2e.
var operatorLogs stack.LogBuffer

// sweepSecrets fails the test if any secret value of the cluster (the
// challenge, the signer and workload private keys) appears in the
// operator's logs, an Event, or a status.
func sweepSecrets(t *testing.T, c client.Reader) {
	t.Helper()
	r, err := hygiene.Sweep(t.Context(), c, operatorLogs.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	for _, f := range r.Findings {
		t.Error(f)
	}
	if r.LogBytes == 0 || r.Secrets == 0 {
		t.Errorf("the sweep searched nothing: %s", r)
	}
}
