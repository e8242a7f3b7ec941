package node

import (
	"os"
	"testing"
)

// SkipIfUnavailable skips t when this machine cannot run a node
// (Unavailable, with kubelet looked for in BinDir(root)), unless
// RequiredEnv is "required" (CI), which makes it a failure.
func SkipIfUnavailable(t testing.TB, root string) {
	t.Helper()
	if err := Unavailable(BinDir(root)); err != nil {
		if os.Getenv(RequiredEnv) == "required" {
			t.Fatalf("%s=required, but this machine cannot run a node: %v", RequiredEnv, err)
		}
		t.Skipf("no node on this machine: %v (%s=required makes this a failure)", err, RequiredEnv)
	}
}
