package node

import (
	"context"
	"os"
	"testing"
	"time"
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

// StartForTest starts a node for t and stops it when t ends. Its pods are
// deleted first, so that kubelet stops their containers and unmounts their
// volumes itself; a failed test gets the end of kubelet's and containerd's
// logs.
func StartForTest(t testing.TB, opts Options) *Node {
	t.Helper()
	n, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(n.LogTail("kubelet.log", 40))
			t.Log(n.LogTail("containerd.log", 20))
		}
		// t.Context() is done by the time cleanups run.
		if err := n.DeletePods(context.Background(), 90*time.Second); err != nil {
			t.Errorf("deleting the node's pods: %v", err)
		}
		if err := n.Stop(); err != nil {
			t.Errorf("stopping the node: %v", err)
		}
	})
	return n
}
