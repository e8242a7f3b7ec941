//go:build linux

package imagebuild

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nodeLock is test/node's LockPath: containerd 1.6 shares a few fixed paths
// (/run/containerd) between instances, so one runs at a time on a machine.
const nodeLock = "/tmp/scep-operator-node.lock"

// TestContainerdImports imports the tarball into a containerd of its own,
// as `kind load image-archive` does (ctr -n k8s.io images import
// --all-platforms --digests, from standard input) and as ctr does by
// default, and requires the whole index under the image's name. It needs
// root and containerd (make test-deps installs it); elsewhere it skips.
func TestContainerdImports(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	for _, bin := range []string{"containerd", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (make test-deps installs it as root)", bin)
		}
	}
	r := fakeBuild(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	lock, err := os.OpenFile(nodeLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Close() }()
	for syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		select {
		case <-ctx.Done():
			t.Fatalf("another containerd held %s too long", nodeLock)
		case <-time.After(time.Second):
		}
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	// Short: a unix socket path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "ctrd")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	sock := filepath.Join(dir, "c.sock")
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logFile.Close() }()
	cd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cd.Stdout, cd.Stderr = logFile, logFile
	if err := cd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cd.Process.Kill()
			<-done
		}
	}()
	ctr := func(stdin string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", sock, "--namespace", "k8s.io"}, args...)...)
		if stdin != "" {
			f, err := os.Open(stdin)
			if err != nil {
				return "", err
			}
			defer func() { _ = f.Close() }()
			cmd.Stdin = f
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := ctr("", "version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("containerd did not serve %s:\n%s", sock, log)
		}
		time.Sleep(200 * time.Millisecond)
	}

	idx := digest(t, r.Index).String()
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
	}{
		{"as kind load image-archive", r.Tarball, []string{"images", "import", "--all-platforms", "--digests", "--snapshotter", "native", "-"}},
		{"as ctr by default", "", []string{"images", "import", "--snapshotter", "native", r.Tarball}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := ctr(tc.stdin, tc.args...); err != nil {
				t.Fatalf("ctr %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			}
			out, err := ctr("", "images", "ls")
			if err != nil {
				t.Fatalf("ctr images ls: %v\n%s", err, out)
			}
			var line string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, r.Tag.Name()+" ") {
					line = l
				}
			}
			if !strings.Contains(line, idx) || !strings.Contains(line, "linux/amd64,linux/arm64/v8") {
				t.Errorf("containerd does not hold %s as the index %s of both platforms:\n%s", r.Tag.Name(), idx, out)
			}
			if out, err := ctr("", "images", "rm", r.Tag.Name()); err != nil {
				t.Fatalf("ctr images rm: %v\n%s", err, out)
			}
		})
	}
}
