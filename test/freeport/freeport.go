// Package freeport picks ports for the servers tests start, outside the
// kernel's ephemeral port range.
//
// A port that a listener on port 0 got and closed again is in the
// ephemeral range, where the kernel hands ports to every bind to port 0
// and to every outgoing connection. On this project's machines, beside a
// test run, 3 of about 15,000 such ports were taken again within 2
// seconds: a server started on one then fails to bind, or a test that
// expects nothing there meets someone else. Below the range only explicit
// binds take a port, so a port picked at random there and found free stays
// free, but for another test that picks the same one in the same moment.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Loopback returns a TCP port free on 127.0.0.1 now.
func Loopback() (int, error) {
	return On(netip.MustParseAddr("127.0.0.1"))
}

// On returns a TCP port free on addr now.
func On(addr netip.Addr) (int, error) {
	return pick(addr, false)
}

// LoopbackTCPAndUDP returns a port free on 127.0.0.1 for both TCP and UDP
// (a Kerberos KDC serves both).
func LoopbackTCPAndUDP() (int, error) {
	return pick(netip.MustParseAddr("127.0.0.1"), true)
}

// LoopbackAddress is "127.0.0.1:<Loopback()>".
func LoopbackAddress() (string, error) {
	p, err := Loopback()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// The ports picked: above the well-known ports and the Kubernetes
// components' (the kubelet's 10248 and 10250, kube-proxy's 10249 and
// 10256), below the NodePort range (30000-32767) that kube-proxy's rules
// may claim on a node, and below the ephemeral range.
const (
	minPort = 11000
	maxPort = 29999
)

func pick(addr netip.Addr, udp bool) (int, error) {
	lo, hi := minPort, min(maxPort, ephemeralStart()-1)
	if hi-lo < 1000 {
		return 0, fmt.Errorf("freeport: the ephemeral range starts at %d, which leaves too few ports below it", hi+1)
	}
	for range 200 {
		p := lo + rand.IntN(hi-lo+1)
		if free(addr, p, udp) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("freeport: no free port on %s in %d-%d after 200 tries", addr, lo, hi)
}

func free(addr netip.Addr, port int, udp bool) bool {
	hostPort := net.JoinHostPort(addr.String(), strconv.Itoa(port))
	l, err := net.Listen("tcp", hostPort)
	if err != nil {
		return false
	}
	defer func() { _ = l.Close() }()
	if udp {
		u, err := net.ListenPacket("udp", hostPort)
		if err != nil {
			return false
		}
		_ = u.Close()
	}
	return true
}

// ephemeralStart is the first port of the kernel's ephemeral range (32768,
// Linux's default, if it cannot be read).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
