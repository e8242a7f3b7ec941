package install

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Helm runs the real helm binary against the cluster, as a user does.
type Helm struct {
	// Bin is the helm binary (bin/helm, built by `make helm`).
	Bin string
	// Kubeconfig is the cluster's admin kubeconfig.
	Kubeconfig string
}

// Run runs helm with args and returns its standard output; an error carries
// both outputs.
func (h Helm) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, h.Bin, append([]string{"--kubeconfig", h.Kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// SetFlags turns values into helm's --set flags.
func SetFlags(values []string) []string {
	var out []string
	for _, v := range values {
		out = append(out, "--set", v)
	}
	return out
}
