//go:build linux

package node

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// fakeShimEnv makes the test binary act as a containerd shim: it waits to
// be killed (at most a minute), with the shim's -address on its command line.
const fakeShimEnv = "SCEP_NODE_TEST_FAKE_SHIM"

func TestMain(m *testing.M) {
	if os.Getenv(fakeShimEnv) != "" {
		time.Sleep(time.Minute)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// startFakeShim starts a process whose command line looks like a shim of
// the containerd serving socket.
func startFakeShim(t *testing.T, socket string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{
		Path: self,
		Args: []string{"containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", socket},
		Env:  append(os.Environ(), fakeShimEnv+"=1"),
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// TestSweepLeftovers: a node whose test was killed left its directory, a
// shim and a directory it recorded creating elsewhere; the next node
// removes them, and leaves alone its own directory, a node still waiting
// for the lock, and shims that are not the dead node's. (The pods'
// processes and kubepods cgroups a dead node leaves are swept the same way;
// that was checked by killing TestNode's process, not here: it needs
// real cgroups.)
func TestSweepLeftovers(t *testing.T) {
	tmp := t.TempDir()
	mk := func(name string, sub string) string {
		dir := filepath.Join(tmp, dirPrefix+name)
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dead := mk("dead", "containerd")
	// What the dead node recorded it would create outside its directory
	// (kubelet's /var/lib/kubelet, say), and did.
	outside := filepath.Join(tmp, "var-lib-kubelet")
	if err := os.MkdirAll(filepath.Join(outside, "device-plugins"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, creationsFile), []byte("path "+outside+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waiting := mk("waiting", "images")
	self := mk("self", "containerd")
	other := filepath.Join(tmp, "other", "containerd.sock")

	deadShim := startFakeShim(t, socketIn(dead))
	selfShim := startFakeShim(t, socketIn(self))
	otherShim := startFakeShim(t, other)
	// Wait until each fake shim runs as itself (its command line in /proc)
	// before sweeping.
	for _, socket := range []string{socketIn(dead), socketIn(self), other} {
		deadline := time.Now().Add(30 * time.Second)
		for len(shimPIDs(socket)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the fake shim for %s never showed up in /proc", socket)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	removed := sweepLeftovers(tmp, self)
	if len(removed) != 1 || removed[0] != dead {
		t.Errorf("removed %v, want only %s", removed, dead)
	}
	for _, dir := range []string{self, waiting} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s: %v (it must be kept)", dir, err)
		}
	}
	for _, gone := range []string{dead, outside} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", gone, err)
		}
	}

	err := deadShim.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the dead node's shim ended with %v, want killed", err)
	}
	for name, cmd := range map[string]*exec.Cmd{"this node's": selfShim, "another containerd's": otherShim} {
		// Not reaped yet, a killed child would be a zombie.
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "stat"))
		if err != nil || processState(stat) == 'Z' {
			t.Errorf("%s shim was killed (%v)", name, err)
		}
	}
}
