package node

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
)

// CNIBinDir is where Debian's containernetworking-plugins install the CNI
// plugins (bridge, host-local, loopback, portmap).
const CNIBinDir = "/usr/lib/cni"

// PodNetwork is a pod network on one Linux bridge: containerd's CNI plugins
// give each pod without hostNetwork an address in Subnet, with Gateway
// (the bridge's own address, which test/cluster assigns before the API
// server binds it) as its default route. The bridge lives in the host's
// network namespace; every pod's address lives in a namespace containerd
// creates for it, so all of this traffic stays on the machine.
type PodNetwork struct {
	// Bridge is the bridge's interface name.
	Bridge string
	// Subnet holds the pods' addresses and Gateway.
	Subnet netip.Prefix
	// Gateway is the bridge's address, the pods' default route.
	Gateway netip.Addr
}

// cniConfig is the CNI network list containerd runs for each pod sandbox:
// the bridge with host-local addresses (records under ipamDir; masqueraded
// when they leave the subnet; hairpin so a pod reaches itself through a
// Service), and portmap for hostPort.
func (p PodNetwork) cniConfig(ipamDir string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "scep-operator-pods",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      p.Bridge,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": p.Subnet.String(), "gateway": p.Gateway.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// writeCNIConfig writes the network list into the node's CNI configuration
// directory.
func (n *Node) writeCNIConfig() error {
	b, err := n.opts.PodNetwork.cniConfig(filepath.Join(n.Dir, "cni", "ipam"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.Dir, "cni", "net.d", "10-scep-operator.conflist"), b, 0o600)
}
