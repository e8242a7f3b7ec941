package e2e

import (
	"sync"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/test/hygiene"
)

// operatorLogs keeps what the operator logged during the e2e.
var operatorLogs syncBuffer

type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

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
