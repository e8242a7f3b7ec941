package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// Defaults of Options: a pod subnet no machine of ours routes, and the
// bridge name that says whose it is.
var (
	DefaultPodSubnet = netip.MustParsePrefix("10.244.0.0/24")
	// DefaultServiceSubnet is envtest's --service-cluster-ip-range: the
	// `kubernetes` Service gets its first address.
	DefaultServiceSubnet = netip.MustParsePrefix("10.0.0.0/24")
)

// DefaultBridge is the pod network's bridge.
const DefaultBridge = "scepk8s0"

// run runs a command and says what failed with its output.
func run(ctx context.Context, name string, args ...string) error {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// checkRoutes refuses a subnet that overlaps a network this machine already
// routes: the pods' traffic must stay on the machine, and never shadow
// a real network.
func checkRoutes(ctx context.Context, bridge string, subnets ...netip.Prefix) error {
	out, err := exec.CommandContext(ctx, "ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return fmt.Errorf("ip route: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.Contains(line, " dev "+bridge+" ") || strings.HasSuffix(line, " dev "+bridge) {
			continue
		}
		dst := f[0]
		if f[0] == "local" || f[0] == "broadcast" || f[0] == "unreachable" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if dst == "default" || strings.HasPrefix(dst, "127.") {
			continue
		}
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			a, aerr := netip.ParseAddr(dst)
			if aerr != nil {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		for _, s := range subnets {
			if s.Overlaps(p) {
				return fmt.Errorf("this machine already routes %s (%q), which overlaps the test cluster's %s: pick another subnet (Options)", p, strings.TrimSpace(line), s)
			}
		}
	}
	return nil
}

// createBridge makes the pod network's bridge with the gateway address (the
// host's end of the pod network), before the API server binds that address.
// A bridge of that name left by a killed run (the caller holds the machine's
// node lock) is replaced.
func createBridge(ctx context.Context, bridge string, gateway netip.Addr, subnet netip.Prefix) error {
	_ = deleteBridge(ctx, bridge)
	if err := run(ctx, "ip", "link", "add", bridge, "type", "bridge"); err != nil {
		return err
	}
	if err := run(ctx, "ip", "addr", "add", netip.PrefixFrom(gateway, subnet.Bits()).String(), "dev", bridge); err != nil {
		return err
	}
	return run(ctx, "ip", "link", "set", bridge, "up")
}

// deleteBridge removes the bridge (the pods' veth ends go with their
// network namespaces).
func deleteBridge(ctx context.Context, bridge string) error {
	if exec.CommandContext(ctx, "ip", "link", "show", bridge).Run() != nil {
		return nil
	}
	return run(ctx, "ip", "link", "del", bridge)
}

// kubeProxyTables are the nftables tables kube-proxy's nftables mode
// creates; it leaves them behind when killed.
var kubeProxyTables = [][2]string{{"ip", "kube-proxy"}, {"ip6", "kube-proxy"}}

// deleteKubeProxyTables removes kube-proxy's tables, if there.
func deleteKubeProxyTables(ctx context.Context) {
	for _, t := range kubeProxyTables {
		if exec.CommandContext(ctx, "nft", "list", "table", t[0], t[1]).Run() == nil {
			_ = run(ctx, "nft", "delete", "table", t[0], t[1])
		}
	}
}

// kubeProxyConfig is kube-proxy in nftables mode for the pod network:
// masquerading everything it DNATs, so a pod reaches a Service whose
// endpoint is itself or a pod on the same bridge, and the host reaches
// Services; no conntrack sysctl changes (the machine may not allow them);
// health and metrics on free loopback ports.
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {{kubeconfig}}
mode: nftables
hostnameOverride: {{node}}
clusterCIDR: {{podSubnet}}
bindAddress: {{gateway}}
healthzBindAddress: 127.0.0.1:{{healthzPort}}
metricsBindAddress: 127.0.0.1:{{metricsPort}}
nodePortAddresses: ["{{gateway}}/32"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
nftables:
  masqueradeAll: true
  syncPeriod: 30s
  minSyncPeriod: 0s
`
