// Package node runs a real Kubernetes node on this machine for the
// end-to-end test and the demo: containerd (from the system's packages, with
// its own configuration and state under a temporary directory) and kubelet
// (built by hack/envtest-binaries.sh into bin/), registered with an envtest
// API server. Images are built from this module's Go programs and imported,
// never pulled.
//
// Alone, there is no scheduler and no network plugin: pods set
// spec.nodeName to Name, use hostNetwork and imagePullPolicy Never, and do
// not mount a ServiceAccount token, as CertwatchPod does. test/cluster adds
// the rest of a cluster (a pod network through Options.PodNetwork, a
// scheduler, controller-manager and kube-proxy).
//
// One kubelet per machine: it binds 127.0.0.1:10250 and :10248 and writes a
// few fixed paths, so Start holds LockPath for as long as the node runs.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	// Name is the node's name (kubelet's --hostname-override). The API
	// server reaches the kubelet by it, so start the API server with
	// APIServerFlags.
	Name = "localhost"
	// LockPath serializes nodes on one machine (test runs, the demo).
	LockPath = "/tmp/scep-operator-node.lock"
	// RequiredEnv, when set to "required", makes a machine that cannot run
	// a node an error rather than a reason to skip (CI sets it).
	RequiredEnv = "SCEP_NODE_E2E"

	kubeletPort       = 10250
	kubeletHealthPort = 10248
)

// APIServerFlags are the kube-apiserver flags the node needs: the API server
// reaches the kubelet (for logs) at https://localhost:10250.
var APIServerFlags = map[string]string{"kubelet-preferred-address-types": "Hostname"}

// fixedPaths are written by kubelet or containerd whatever their flags;
// Stop removes those that did not exist before Start.
var fixedPaths = []string{"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/run/containerd"}

// Options configure Start.
type Options struct {
	// Root is the repository root (images are built from its packages).
	Root string
	// Kubeconfig is an admin kubeconfig of the API server to register with.
	Kubeconfig string
	// BinDir holds kubelet; empty means KUBEBUILDER_ASSETS, else Root/bin.
	BinDir string
	// Images are built and imported besides PauseImage.
	Images []Image
	// Tarballs are image tarballs built elsewhere (the operator's image
	// from internal/imagebuild), imported as they are.
	Tarballs []string
	// LockTimeout bounds the wait for another node on this machine to
	// stop (default 15 minutes).
	LockTimeout time.Duration
	// StartTimeout bounds containerd's and kubelet's start (default 2
	// minutes; the machine may be busy).
	StartTimeout time.Duration
	// Progress, when set, receives a line for each step.
	Progress func(format string, args ...any)
	// Lock, when set, is the machine's node lock, already held by the
	// caller (who also releases it); nil means Start takes it.
	Lock *Lock
	// PodNetwork, when set, gives pods without hostNetwork an address on a
	// CNI bridge; nil leaves containerd without a network plugin.
	PodNetwork *PodNetwork
	// NodeIP is the node's address (kubelet's --node-ip); empty lets
	// kubelet pick the host's.
	NodeIP string
}

// Node is a running containerd and kubelet. Stop it with Stop.
type Node struct {
	// Dir holds the configuration, state and logs of this node.
	Dir string
	// Clientset reaches the API server with the admin kubeconfig.
	Clientset kubernetes.Interface

	opts       Options
	socket     string
	lock       *Lock
	containerd *exec.Cmd
	kubelet    *exec.Cmd
	// created is what this node may create outside Dir, known once it
	// holds the lock; nil before.
	created  *creations
	stopOnce sync.Once
	stopErr  error
}

// Unavailable says why this machine cannot run a node (nil when it can):
// kubelet and containerd need Linux, root, cgroups, containerd, ctr and
// runc on PATH, and kubelet in binDir.
func Unavailable(binDir string) error {
	switch {
	case runtime.GOOS != "linux" || !haveNodeSupport:
		return errors.New("a node needs Linux")
	case os.Geteuid() != 0:
		return errors.New("kubelet and containerd need root")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
			return errors.New("no cgroup file system at /sys/fs/cgroup (neither v2 nor v1's memory controller)")
		}
	}
	for _, cmd := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Errorf("%s is not installed: run hack/node-deps.sh as root (make test-deps does), or apt-get install containerd runc", cmd)
		}
	}
	if _, err := os.Stat(filepath.Join(binDir, "kubelet")); err != nil {
		return fmt.Errorf("kubelet not found in %s: run `make kubelet` (hack/envtest-binaries.sh bin kubelet)", binDir)
	}
	return nil
}

// BinDir is where kubelet is looked for: KUBEBUILDER_ASSETS, else root/bin.
func BinDir(root string) string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(root, "bin")
}

func (n *Node) progress(format string, args ...any) {
	if n.opts.Progress != nil {
		n.opts.Progress(format, args...)
	}
}

// Start builds and imports the images, then starts containerd and kubelet
// and waits until the node is registered and its kubelet healthy. On error
// whatever was started is stopped and cleaned up.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	if opts.BinDir == "" {
		opts.BinDir = BinDir(opts.Root)
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 15 * time.Minute
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	if err := Unavailable(opts.BinDir); err != nil {
		return nil, err
	}
	n := &Node{opts: opts}
	cfg, err := clientcmd.BuildConfigFromFlags("", opts.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", opts.Kubeconfig, err)
	}
	if n.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if n.Dir, err = os.MkdirTemp("", dirPrefix); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if serr := n.Stop(); serr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, serr)
			}
		}
	}()
	n.socket = socketIn(n.Dir)

	step := time.Now()
	images := append([]Image{PauseImage}, opts.Images...)
	var tarballs []string
	for _, img := range images {
		out := filepath.Join(n.Dir, "images", img.binaryName()+".tar")
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			return nil, err
		}
		if err := BuildImage(ctx, opts.Root, img, out); err != nil {
			return nil, err
		}
		tarballs = append(tarballs, out)
	}
	n.progress("  built %d images from Go packages (%s)", len(images), time.Since(step).Round(time.Millisecond))
	tarballs = append(tarballs, opts.Tarballs...)

	if opts.Lock == nil {
		if n.lock, err = AcquireLock(ctx, opts.LockTimeout, opts.Progress); err != nil {
			return nil, err
		}
	}
	for _, dir := range sweepLeftovers(os.TempDir(), n.Dir) {
		n.progress("  removed what an earlier node left behind (its test was killed before Stop): %s", dir)
	}
	for _, port := range []int{kubeletPort, kubeletHealthPort} {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("port %d, which kubelet needs, is taken by a process outside %s's lock: %w", port, LockPath, err)
		}
		_ = l.Close()
	}
	n.created = missingNow()
	if err := n.created.write(n.Dir); err != nil {
		return nil, err
	}

	step = time.Now()
	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	for _, tb := range tarballs {
		if out, err := n.ctr(ctx, "images", "import", "--snapshotter", "native", tb); err != nil {
			return nil, fmt.Errorf("importing %s into containerd: %v: %s", filepath.Base(tb), err, out)
		}
	}
	n.progress("  containerd running, images imported (%s)", time.Since(step).Round(time.Millisecond))

	step = time.Now()
	if err := n.startKubelet(ctx); err != nil {
		return nil, err
	}
	n.progress("  kubelet registered node %q (%s)", Name, time.Since(step).Round(time.Millisecond))
	return n, nil
}

// Lock is the machine's node lock (LockPath): one node, and one pod
// network, per machine at a time.
type Lock struct{ f *os.File }

// AcquireLock takes the machine's node lock, waiting up to timeout for
// another node to stop; progress (may be nil) hears once that it waits.
func AcquireLock(ctx context.Context, timeout time.Duration, progress func(string, ...any)) (*Lock, error) {
	f, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the node lock %s: %w", LockPath, err)
	}
	deadline := time.Now().Add(timeout)
	said := false
	for {
		ok, err := lockFile(f)
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", LockPath, err)
		}
		if ok {
			return &Lock{f: f}, nil
		}
		if !said && progress != nil {
			progress("  waiting for another node on this machine to stop (%s is locked)", LockPath)
			said = true
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("another node on this machine held %s for %s", LockPath, timeout)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Release releases the lock; it is safe to call more than once.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	_ = unlockFile(l.f)
	_ = l.f.Close()
	l.f = nil
}

// containerdConfig keeps containerd's root, state, socket and plugin paths
// under the node's directory; the CRI plugin uses the local pause image and
// may not raise OOM scores (no CAP_SYS_RESOURCE on these machines).
const containerdConfig = `version = 2
root = "{{dir}}/containerd/root"
state = "{{dir}}/containerd/state"
[grpc]
  address = "{{socket}}"
[ttrpc]
  address = "{{socket}}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{{dir}}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{pause}}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{cnibin}}"
    conf_dir = "{{dir}}/cni/net.d"
`

func (n *Node) startContainerd(ctx context.Context) error {
	// Without a pod network, an empty plugin directory: pods must use
	// hostNetwork.
	cniBin := filepath.Join(n.Dir, "cni", "bin")
	if n.opts.PodNetwork != nil {
		cniBin = CNIBinDir
	}
	cfg := strings.NewReplacer("{{dir}}", n.Dir, "{{socket}}", n.socket, "{{pause}}", PauseImage.Ref, "{{cnibin}}", cniBin).Replace(containerdConfig)
	for _, d := range []string{"containerd", "cni/bin", "cni/net.d"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o700); err != nil {
			return err
		}
	}
	if n.opts.PodNetwork != nil {
		if err := n.writeCNIConfig(); err != nil {
			return err
		}
	}
	path := filepath.Join(n.Dir, "containerd", "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	cmd, err := n.spawn("containerd", "containerd", "--config", path)
	if err != nil {
		return err
	}
	n.containerd = cmd
	return n.waitFor(ctx, "containerd to serve "+n.socket, cmd, "containerd.log", func() (bool, string) {
		out, err := n.ctr(ctx, "version")
		if err != nil {
			return false, strings.TrimSpace(string(out))
		}
		return true, ""
	})
}

// kubeletConfig is what worked on these machines (see the notes in
// shared/notes/kubelet.md): cgroup v1 allowed, cgroupfs (no systemd),
// anonymous AlwaysAllow on loopback for the API server's log requests,
// near-zero eviction and no image GC on small disks, and a 5 s sync so a
// changed Secret reaches pods in seconds.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{{socket}}
resolvConf: ""
syncFrequency: 5s
podLogsDir: {{dir}}/pod-logs
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`

func (n *Node) startKubelet(ctx context.Context) error {
	cfg := strings.NewReplacer("{{dir}}", n.Dir, "{{socket}}", n.socket).Replace(kubeletConfig)
	dir := filepath.Join(n.Dir, "kubelet")
	if err := os.MkdirAll(filepath.Join(n.Dir, "pod-logs"), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	args := []string{
		"--config", path,
		"--kubeconfig", n.opts.Kubeconfig,
		"--root-dir", filepath.Join(dir, "root"),
		"--cert-dir", filepath.Join(dir, "pki"),
		"--hostname-override", Name,
		"--v", "1",
	}
	if n.opts.NodeIP != "" {
		args = append(args, "--node-ip", n.opts.NodeIP)
	}
	cmd, err := n.spawn("kubelet", filepath.Join(n.opts.BinDir, "kubelet"), args...)
	if err != nil {
		return err
	}
	n.kubelet = cmd
	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", kubeletHealthPort)
	return n.waitFor(ctx, "kubelet to register node "+Name, cmd, "kubelet.log", func() (bool, string) {
		resp, err := http.Get(healthz)
		if err != nil {
			return false, "healthz: " + err.Error()
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, "healthz: " + resp.Status
		}
		if _, err := n.Clientset.CoreV1().Nodes().Get(ctx, Name, metav1.GetOptions{}); err != nil {
			return false, "node: " + err.Error()
		}
		return true, ""
	})
}

// spawn starts a process of the node with its output in Dir/<name>.log.
func (n *Node) spawn(name, path string, args ...string) (*exec.Cmd, error) {
	return StartProcess(n.Dir, name, path, args...)
}

// StartProcess starts a program with its output in dir/<name>.log; it dies
// with the test process should that end without stopping it (Terminate).
func StartProcess(dir, name, path string, args ...string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	setDeathSignal(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
	}()
	return cmd, nil
}

// waitFor polls cond until it holds, failing early when the process exits.
func (n *Node) waitFor(ctx context.Context, what string, cmd *exec.Cmd, logName string, cond func() (bool, string)) error {
	deadline := time.Now().Add(n.opts.StartTimeout)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return nil
		}
		last = msg
		if Exited(cmd) {
			return fmt.Errorf("%s exited while waiting for %s: %s\n%s", filepath.Base(cmd.Path), what, last, n.LogTail(logName, 30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s: %s\n%s", n.opts.StartTimeout, what, last, n.LogTail(logName, 30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Exited reports whether a process StartProcess started has ended.
func Exited(cmd *exec.Cmd) bool {
	return cmd.Process.Signal(syscall.Signal(0)) != nil
}

// ctr runs containerd's client against this node's containerd, in the CRI
// plugin's namespace.
func (n *Node) ctr(ctx context.Context, args ...string) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return exec.CommandContext(cctx, "ctr", append([]string{"--address", n.socket, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
}

// LogTail is the last lines of one of the node's logs ("kubelet.log",
// "containerd.log"), for a failure message.
func (n *Node) LogTail(name string, lines int) string {
	return TailFile(filepath.Join(n.Dir, name), lines)
}

// TailFile is the last lines of a log file under a heading that names it,
// or why it could not be read.
func TailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no %s: %v)", filepath.Base(path), err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "--- last lines of " + filepath.Base(path) + " ---\n" + strings.Join(all, "\n")
}

// DeletePods deletes every pod bound to the node and waits (up to timeout)
// until kubelet has stopped their containers and the pods are gone.
func (n *Node) DeletePods(ctx context.Context, timeout time.Duration) error {
	pods, err := n.Clientset.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + Name})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if err := n.Clientset.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		pods, err := n.Clientset.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + Name})
		if err != nil {
			return err
		}
		if len(pods.Items) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d pods still on the node after %s (e.g. %s/%s)", len(pods.Items), timeout, pods.Items[0].Namespace, pods.Items[0].Name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitRunning waits until a pod on the node is Running with every
// container ready, and returns it. A container that cannot start
// (e.g. ErrImageNeverPull) fails early with its reason.
func (n *Node) WaitRunning(ctx context.Context, namespace, name string, timeout time.Duration) (*corev1.Pod, error) {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		pod, err := n.Clientset.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		ready := pod.Status.Phase == corev1.PodRunning && len(pod.Status.ContainerStatuses) > 0
		last = "phase " + string(pod.Status.Phase)
		for _, cs := range pod.Status.ContainerStatuses {
			ready = ready && cs.Ready
			if w := cs.State.Waiting; w != nil {
				last += fmt.Sprintf(", %s waiting: %s %s", cs.Name, w.Reason, w.Message)
				switch w.Reason {
				case "ErrImageNeverPull", "CreateContainerConfigError", "InvalidImageName", "CreateContainerError":
					return nil, fmt.Errorf("pod %s/%s cannot start: %s", namespace, name, last)
				}
			}
			if t := cs.State.Terminated; t != nil {
				last += fmt.Sprintf(", %s terminated: %s (exit %d) %s", cs.Name, t.Reason, t.ExitCode, t.Message)
			}
		}
		if ready {
			return pod, nil
		}
		if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			return nil, fmt.Errorf("pod %s/%s ended: %s", namespace, name, last)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out after %s waiting for pod %s/%s to run: %s", timeout, namespace, name, last)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Logs is a pod's log as the API server returns it (from kubelet).
func (n *Node) Logs(ctx context.Context, namespace, name string) (string, error) {
	b, err := n.Clientset.CoreV1().Pods(namespace).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	return string(b), err
}

// Stop stops kubelet, every container, containerd and its shims (by PID),
// unmounts what they mounted, removes what they wrote (the node's directory
// and the fixed paths that did not exist before Start) and releases the
// machine's node lock. Delete the node's pods first (DeletePods) for a
// graceful end; Stop works without. It is safe to call more than once.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() { n.stopErr = n.stop() })
	return n.stopErr
}

func (n *Node) stop() error {
	var errs []error
	Terminate(n.kubelet, 20*time.Second)
	if n.containerd != nil && !Exited(n.containerd) {
		// Containers kubelet left behind: kill and remove them while
		// containerd still answers.
		ctx := context.Background()
		if out, err := n.ctr(ctx, "tasks", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(string(out)) {
				_, _ = n.ctr(ctx, "tasks", "kill", "-a", "-s", "SIGKILL", id)
				_, _ = n.ctr(ctx, "tasks", "rm", "-f", id)
			}
		}
		if out, err := n.ctr(ctx, "containers", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(string(out)) {
				_, _ = n.ctr(ctx, "containers", "rm", id)
			}
		}
	}
	Terminate(n.containerd, 20*time.Second)
	if n.Dir != "" {
		if err := removeNode(n.Dir, n.created); err != nil {
			errs = append(errs, err)
		}
	}
	// kubelet creates this under /var/lib/kubelet even with --root-dir;
	// when that directory was there before, it stays, the socket goes.
	if n.created != nil && !slices.Contains(n.created.paths, "/var/lib/kubelet") {
		_ = os.Remove("/var/lib/kubelet/device-plugins/kubelet.sock")
	}
	n.lock.Release()
	return errors.Join(errs...)
}

// socketIn is the containerd socket of the node whose directory is dir.
func socketIn(dir string) string { return filepath.Join(dir, "containerd", "containerd.sock") }

// dirPrefix names every node's directory under the temporary directory.
const dirPrefix = "scep-operator-node-"

// sweepLeftovers removes what nodes that were never stopped left behind
// (their test process was killed: kubelet and containerd die with it, the
// shims and the pods do not) and returns the node directories it removed.
// It must be called with the node lock held: then no other node is
// running, and a directory under tmp with a containerd subdirectory belongs
// to a dead one. keep (this node's directory) and directories without
// containerd (a node still waiting for the lock) are left alone.
func sweepLeftovers(tmp, keep string) []string {
	dirs, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*"))
	var removed []string
	for _, dir := range dirs {
		if dir == keep {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, "containerd")); err != nil || !fi.IsDir() {
			continue
		}
		if removeNode(dir, readCreations(dir)) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}

// removeNode removes a node whose kubelet and containerd have stopped: it
// kills its shims and whatever still runs in the cgroups it created (a
// killed shim's containers live on, reparented), removes those cgroups,
// unmounts and removes its directory and the paths it created. created
// may be nil (the node never got the lock: nothing outside dir is its).
func removeNode(dir string, created *creations) error {
	if created == nil {
		created = &creations{}
	}
	pids := shimPIDs(socketIn(dir))
	for _, cg := range created.cgroups {
		pids = append(pids, cgroupPIDs(cg)...)
	}
	for _, pid := range pids {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
	waitGone(pids, 10*time.Second)
	// A killed process leaves its cgroup a moment after it is gone from
	// /proc; until then rmdir says busy.
	for _, cg := range created.cgroups {
		deadline := time.Now().Add(10 * time.Second)
		for !removeCgroupTree(cg) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	var errs []error
	if mounts, err := mountsUnder(append([]string{dir}, created.paths...)...); err != nil {
		errs = append(errs, fmt.Errorf("listing mounts: %w", err))
	} else {
		for _, m := range mounts {
			if err := unmount(m); err != nil {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
			}
		}
	}
	for _, p := range append(created.paths, dir) {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// creations is what a node may create outside its directory: the fixed
// paths and kubepods cgroups that did not exist when it started.
type creations struct{ paths, cgroups []string }

// creationsFile, in a node's directory, keeps its creations ("path P" and
// "cgroup P" lines), so that a later node can sweep them if this one is
// never stopped.
const creationsFile = "creations"

// missingNow lists the fixed paths and kubepods cgroups that do not exist.
func missingNow() *creations {
	c := &creations{}
	for _, p := range fixedPaths {
		if _, err := os.Lstat(p); err != nil {
			c.paths = append(c.paths, p)
		}
	}
	for _, p := range kubepodsCandidates() {
		if _, err := os.Lstat(p); err != nil {
			c.cgroups = append(c.cgroups, p)
		}
	}
	return c
}

func (c *creations) write(dir string) error {
	var b strings.Builder
	for _, p := range c.paths {
		fmt.Fprintf(&b, "path %s\n", p)
	}
	for _, p := range c.cgroups {
		fmt.Fprintf(&b, "cgroup %s\n", p)
	}
	return os.WriteFile(filepath.Join(dir, creationsFile), []byte(b.String()), 0o600)
}

// readCreations reads what write wrote; a missing file means nothing.
func readCreations(dir string) *creations {
	b, _ := os.ReadFile(filepath.Join(dir, creationsFile))
	c := &creations{}
	for _, line := range strings.Split(string(b), "\n") {
		switch kind, path, _ := strings.Cut(line, " "); kind {
		case "path":
			c.paths = append(c.paths, path)
		case "cgroup":
			c.cgroups = append(c.cgroups, path)
		}
	}
	return c
}

// waitGone waits up to timeout for the processes to exit (their /proc
// entries to vanish, or to be zombies a parent will reap).
func waitGone(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
			if err != nil || processState(b) == 'Z' {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// processState is the state letter of a /proc/<pid>/stat line (after the
// command name, which may itself hold spaces and parentheses).
func processState(stat []byte) byte {
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	return stat[i+2]
}

// Terminate sends SIGTERM, then SIGKILL after grace, and waits for the
// exit of a process StartProcess started (nil does nothing).
func Terminate(cmd *exec.Cmd, grace time.Duration) {
	if cmd == nil || cmd.Process == nil || Exited(cmd) {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for !Exited(cmd) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			deadline = time.Now().Add(grace)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shimPIDs finds the containerd shims serving this node's containerd: their
// command line names its socket, which no other containerd uses.
func shimPIDs(socket string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i, a := range args {
			if a == "-address" && i+1 < len(args) && args[i+1] == socket {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// kubepodsCandidates are where kubelet (cgroupfs driver) may create its
// kubepods cgroup: at the root of a cgroup v2 hierarchy, or under each v1
// controller's hierarchy.
func kubepodsCandidates() []string {
	const root = "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return []string{filepath.Join(root, "kubepods")}
	}
	var out []string
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if e.IsDir() { // not the cpu -> cpu,cpuacct symlinks
			out = append(out, filepath.Join(root, e.Name(), "kubepods"))
		}
	}
	return out
}

// cgroupPIDs lists the processes in a cgroup and its children.
func cgroupPIDs(root string) []int {
	var pids []int
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroupTree removes a cgroup and its children, deepest first; a
// cgroup that still has processes stays (rmdir refuses it). It reports
// whether root is gone.
func removeCgroupTree(root string) bool {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(dirs[i])
	}
	_, err := os.Lstat(root)
	return errors.Is(err, os.ErrNotExist)
}
