// Package cluster runs a real single-node Kubernetes cluster on this machine
// for the install test and the demo: kube-apiserver and etcd (envtest),
// kube-controller-manager, kube-scheduler and kube-proxy (nftables mode),
// all built from the Go module proxy by hack/envtest-binaries.sh, and the
// kubelet + containerd node of test/node with a CNI bridge pod network. A
// Deployment becomes a ReplicaSet and a scheduled Pod with its own
// ServiceAccount token and the kube-root-ca.crt ConfigMap; Pods reach the
// API server through the `kubernetes` Service, and Services route to Pods.
//
// Everything stays on this machine: the API server listens on the host's
// end of the pod network (Gateway, an address on the test's own bridge),
// Pods get addresses in network namespaces containerd creates for them,
// and Service addresses exist only in kube-proxy's nftables rules. Nothing
// is pulled: images are built from Go code and imported.
//
// One cluster per machine at a time: it holds test/node's machine lock for
// its whole life, since the kubelet's ports, the bridge and kube-proxy's
// nftables tables are the machine's.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/freeport"
	"github.com/scep-operator/scep-operator/test/node"
)

// Options configure Start.
type Options struct {
	// Root is the repository root; empty means found from the working directory.
	Root string
	// BinDir holds the Kubernetes binaries; empty means KUBEBUILDER_ASSETS,
	// else Root/bin.
	BinDir string
	// CRDPaths are installed once the API server runs (envtest.Options).
	CRDPaths []string
	// Images are built from Go packages and imported into the node.
	Images []node.Image
	// Tarballs are prebuilt image tarballs imported into the node.
	Tarballs []string
	// PodSubnet is the pods' network (DefaultPodSubnet); its first
	// address is Gateway.
	PodSubnet netip.Prefix
	// Bridge names the pod network's bridge (DefaultBridge).
	Bridge string
	// LockTimeout bounds the wait for another node or cluster on this
	// machine to stop (default 15 minutes).
	LockTimeout time.Duration
	// Progress, when set, receives a line for each step.
	Progress func(format string, args ...any)
}

// auditPolicy records who did what (metadata only: never a request's or
// response's body, which may hold Secrets) for writes, so that a test can
// tell which identity wrote an object.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  verbs: ["get", "list", "watch"]
- level: Metadata
`

// Cluster is a running single-node cluster. Stop it with Stop.
type Cluster struct {
	// Env is the API server (admin client and config).
	Env *envtest.Env
	// Kubeconfig is a file with admin credentials.
	Kubeconfig string
	// Node is the kubelet and containerd.
	Node *node.Node
	// Dir holds the control plane's certificates, configuration and logs.
	Dir string
	// Gateway is the host's address on the pod network: the API server
	// listens there, and so should servers the Pods must reach (a SCEP
	// server started by the test).
	Gateway netip.Addr
	// KubernetesServiceIP is the `kubernetes` Service's address, which
	// in-cluster clients use.
	KubernetesServiceIP netip.Addr
	// AuditLog is the API server's audit log (JSON lines, metadata of
	// every write): see AuditEvents.
	AuditLog string

	opts      Options
	lock      *node.Lock
	processes map[string]*exec.Cmd
	stops     []func()
}

func (c *Cluster) progress(format string, args ...any) {
	if c.opts.Progress != nil {
		c.opts.Progress(format, args...)
	}
}

// Unavailable says why this machine cannot run a cluster (nil when it can):
// what test/node needs, the CNI plugins, nft and ip, and the control-plane
// binaries in binDir.
func Unavailable(binDir string) error {
	if err := node.Unavailable(binDir); err != nil {
		return err
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join(node.CNIBinDir, p)); err != nil {
			return fmt.Errorf("the CNI plugin %s is not in %s: run hack/node-deps.sh as root (make test-deps does), or apt-get install containernetworking-plugins", p, node.CNIBinDir)
		}
	}
	for _, cmd := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Errorf("%s is not installed: run hack/node-deps.sh as root (make test-deps does), or apt-get install nftables iproute2", cmd)
		}
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("%s not found in %s: run `make cluster-binaries` (hack/envtest-binaries.sh)", b, binDir)
		}
	}
	return nil
}

// Start starts the cluster and waits until its node is Ready, the
// `kubernetes` Service routes to the API server, and the controller-manager
// has made the default ServiceAccount and kube-root-ca.crt. On error
// whatever was started is stopped.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Root, err = envtest.RootOr(opts.Root); err != nil {
		return nil, err
	}
	if opts.BinDir == "" {
		opts.BinDir = node.BinDir(opts.Root)
	}
	if !opts.PodSubnet.IsValid() {
		opts.PodSubnet = DefaultPodSubnet
	}
	if opts.Bridge == "" {
		opts.Bridge = DefaultBridge
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 15 * time.Minute
	}
	if err := Unavailable(opts.BinDir); err != nil {
		return nil, err
	}
	c := &Cluster{
		opts:                opts,
		processes:           map[string]*exec.Cmd{},
		Gateway:             opts.PodSubnet.Masked().Addr().Next(),
		KubernetesServiceIP: DefaultServiceSubnet.Masked().Addr().Next(),
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if c.Dir, err = os.MkdirTemp("", "scep-operator-cluster-"); err != nil {
		return nil, err
	}
	c.stops = append(c.stops, func() { _ = os.RemoveAll(c.Dir) })

	if c.lock, err = node.AcquireLock(ctx, opts.LockTimeout, opts.Progress); err != nil {
		return nil, err
	}
	c.stops = append(c.stops, c.lock.Release)
	// Holding the lock, whatever a killed run left is ours to remove.
	deleteKubeProxyTables(ctx)
	if err := checkRoutes(ctx, opts.Bridge, opts.PodSubnet, DefaultServiceSubnet); err != nil {
		return nil, err
	}

	step := time.Now()
	if err := createBridge(ctx, opts.Bridge, c.Gateway, opts.PodSubnet); err != nil {
		return nil, fmt.Errorf("creating the pod network's bridge: %w", err)
	}
	c.stops = append(c.stops, func() { _ = deleteBridge(context.Background(), opts.Bridge) })
	c.progress("  bridge %s with %s/%d (%s)", opts.Bridge, c.Gateway, opts.PodSubnet.Bits(), time.Since(step).Round(time.Millisecond))

	step = time.Now()
	if err := c.startAPIServer(); err != nil {
		return nil, err
	}
	c.progress("  kube-apiserver and etcd at %s (%s)", c.Env.Config.Host, time.Since(step).Round(time.Millisecond))

	step = time.Now()
	if err := c.startControlPlane(); err != nil {
		return nil, err
	}
	c.progress("  kube-controller-manager, kube-scheduler and kube-proxy started (%s)", time.Since(step).Round(time.Millisecond))

	step = time.Now()
	if c.Node, err = node.Start(ctx, node.Options{
		Root:       opts.Root,
		Kubeconfig: c.Kubeconfig,
		BinDir:     opts.BinDir,
		Images:     opts.Images,
		Tarballs:   opts.Tarballs,
		Lock:       c.lock,
		PodNetwork: &node.PodNetwork{Bridge: opts.Bridge, Subnet: opts.PodSubnet, Gateway: c.Gateway},
		NodeIP:     c.Gateway.String(),
		Progress:   opts.Progress,
	}); err != nil {
		return nil, err
	}
	c.stops = append(c.stops, func() {
		// Without the controllers, a deleted Pod stays deleted (its
		// ReplicaSet would make another).
		for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
			node.Terminate(c.processes[name], 10*time.Second)
		}
		_ = c.Node.DeletePods(context.Background(), 60*time.Second)
		_ = c.Node.Stop()
	})

	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	c.progress("  node Ready, Services routed, ServiceAccounts and kube-root-ca.crt published (%s)", time.Since(step).Round(time.Millisecond))
	return c, nil
}

// startAPIServer starts kube-apiserver and etcd with certificates that name
// the `kubernetes` Service, listening on the gateway address, with the
// ServiceAccount admission plugin on (envtest turns it off: without a
// controller-manager no ServiceAccount would exist).
func (c *Cluster) startAPIServer() error {
	certDir := filepath.Join(c.Dir, "pki")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	caPEM, err := writePKI(certDir, net.IP(c.KubernetesServiceIP.AsSlice()), net.IP(c.Gateway.AsSlice()))
	if err != nil {
		return fmt.Errorf("writing the API server's certificates: %w", err)
	}
	port, err := freeport.On(c.Gateway)
	if err != nil {
		return err
	}
	policy := filepath.Join(c.Dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return err
	}
	c.AuditLog = filepath.Join(c.Dir, "audit.log")
	c.Env, err = envtest.New(envtest.Options{
		Root:     c.opts.Root,
		CRDPaths: c.opts.CRDPaths,
		APIServerFlags: map[string]string{
			"kubelet-preferred-address-types": "Hostname",
			"service-cluster-ip-range":        DefaultServiceSubnet.String(),
			"allow-privileged":                "true",
			"audit-policy-file":               policy,
			"audit-log-path":                  c.AuditLog,
			"audit-log-mode":                  "blocking",
		},
		Configure: func(env *ctrlenvtest.Environment) {
			api := env.ControlPlane.GetAPIServer()
			api.CertDir = certDir
			api.Address = c.Gateway.String()
			api.Port = strconv.Itoa(port)
			api.CA = caPEM
			api.Configure().Disable("disable-admission-plugins")
		},
	})
	if err != nil {
		return err
	}
	c.stops = append(c.stops, func() { _ = c.Env.Environment.Stop() })
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	return envtest.WriteKubeconfig(c.Env.Config, c.Kubeconfig)
}

// startControlPlane starts kube-controller-manager (every default
// controller: Deployments, ReplicaSets, ServiceAccounts, the root CA
// publisher, EndpointSlices, garbage collection, namespace deletion),
// kube-scheduler and kube-proxy, each with the admin kubeconfig, no leader
// election, and no serving port of its own.
func (c *Cluster) startControlPlane() error {
	certDir := filepath.Join(c.Dir, "pki")
	kcm := []string{
		"--kubeconfig", c.Kubeconfig,
		"--authentication-kubeconfig", c.Kubeconfig,
		"--authorization-kubeconfig", c.Kubeconfig,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file", filepath.Join(certDir, saKeyFile),
		"--root-ca-file", filepath.Join(certDir, caFile),
		"--cluster-name", "scep-operator-test",
		"--bind-address", "127.0.0.1",
		"--secure-port", "0",
		"--v", "1",
	}
	scheduler := []string{
		"--kubeconfig", c.Kubeconfig,
		"--authentication-kubeconfig", c.Kubeconfig,
		"--authorization-kubeconfig", c.Kubeconfig,
		"--leader-elect=false",
		"--bind-address", "127.0.0.1",
		"--secure-port", "0",
		"--v", "1",
	}
	proxyConfig := filepath.Join(c.Dir, "kube-proxy.yaml")
	loopback := netip.MustParseAddr("127.0.0.1")
	healthzPort, err := freeport.On(loopback)
	if err != nil {
		return err
	}
	metricsPort, err := freeport.On(loopback)
	if err != nil {
		return err
	}
	cfg := strings.NewReplacer("{{kubeconfig}}", c.Kubeconfig, "{{node}}", node.Name,
		"{{podSubnet}}", c.opts.PodSubnet.String(), "{{gateway}}", c.Gateway.String(),
		"{{healthzPort}}", strconv.Itoa(healthzPort), "{{metricsPort}}", strconv.Itoa(metricsPort)).Replace(kubeProxyConfig)
	if err := os.WriteFile(proxyConfig, []byte(cfg), 0o600); err != nil {
		return err
	}
	proxy := []string{"--config", proxyConfig, "--v", "1"}
	for _, p := range []struct {
		name string
		args []string
	}{{"kube-controller-manager", kcm}, {"kube-scheduler", scheduler}, {"kube-proxy", proxy}} {
		cmd, err := node.StartProcess(c.Dir, p.name, filepath.Join(c.opts.BinDir, p.name), p.args...)
		if err != nil {
			return err
		}
		c.processes[p.name] = cmd
		name := p.name
		c.stops = append(c.stops, func() {
			node.Terminate(cmd, 10*time.Second)
			if name == "kube-proxy" {
				deleteKubeProxyTables(context.Background())
			}
		})
	}
	return nil
}

// waitReady waits until the node is Ready, the `kubernetes` Service answers
// through kube-proxy's rules, and the controller-manager has published the
// default ServiceAccount and kube-root-ca.crt in the default namespace.
func (c *Cluster) waitReady(ctx context.Context) error {
	cs := c.Node.Clientset
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.Env.Config.CAData)
	serviceAddr := net.JoinHostPort(c.KubernetesServiceIP.String(), "443")
	return c.Wait(ctx, 3*time.Minute, "the cluster to be ready", func() (bool, string) {
		n, err := cs.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return false, "node: " + err.Error()
		}
		ready := false
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				ready = cond.Status == corev1.ConditionTrue
				if !ready {
					return false, "node not Ready: " + cond.Reason + ": " + cond.Message
				}
			}
		}
		if !ready {
			return false, "node has no Ready condition"
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", serviceAddr, &tls.Config{RootCAs: roots, ServerName: "kubernetes.default.svc"})
		if err != nil {
			return false, "the kubernetes Service (" + serviceAddr + "): " + err.Error()
		}
		_ = conn.Close()
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return false, "ServiceAccount default/default: " + err.Error()
		}
		if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
			return false, "ConfigMap default/kube-root-ca.crt: " + err.Error()
		}
		return true, ""
	})
}

// Wait polls cond every 200 ms until it holds, failing after timeout with
// cond's last message, or as soon as a control-plane process exits.
func (c *Cluster) Wait(ctx context.Context, timeout time.Duration, what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return nil
		}
		last = msg
		if err := c.exited(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s: %s", timeout, what, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// exited says which control-plane process has ended, with its log's tail
// (nil while all run).
func (c *Cluster) exited() error {
	for name, cmd := range c.processes {
		if node.Exited(cmd) {
			return fmt.Errorf("%s exited:\n%s", name, c.LogTail(name, 20))
		}
	}
	return nil
}

// LogTail is the last lines of a control-plane process's log
// ("kube-controller-manager", "kube-scheduler", "kube-proxy"), or of the
// node's ("kubelet", "containerd").
func (c *Cluster) LogTail(process string, lines int) string {
	if _, ok := c.processes[process]; !ok && c.Node != nil {
		return c.Node.LogTail(process+".log", lines)
	}
	return node.TailFile(filepath.Join(c.Dir, process+".log"), lines)
}

// Stop stops everything Start started, newest first: the node's pods and
// the node, kube-proxy (and its nftables tables), the scheduler and the
// controller-manager, the API server and etcd, the bridge; then it releases
// the machine's lock. It is safe to call more than once.
func (c *Cluster) Stop() {
	for i := len(c.stops) - 1; i >= 0; i-- {
		c.stops[i]()
	}
	c.stops = nil
}
