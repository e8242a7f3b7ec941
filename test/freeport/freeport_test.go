package freeport

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
)

func TestPortsAreFreeAndBelowTheEphemeralRange(t *testing.T) {
	start := ephemeralStart()
	for range 50 {
		p, err := Loopback()
		if err != nil {
			t.Fatal(err)
		}
		if p < minPort || p > maxPort || p >= start {
			t.Fatalf("port %d is outside %d-%d", p, minPort, min(maxPort, start-1))
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d was not free: %v", p, err)
		}
		_ = l.Close()
	}
	p, err := LoopbackTCPAndUDP()
	if err != nil {
		t.Fatal(err)
	}
	u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("UDP port %d was not free: %v", p, err)
	}
	_ = u.Close()
}

func TestATakenPortIsNotPicked(t *testing.T) {
	// Every port of the range but one taken would be slow to set up; a
	// taken port must fail the check the picker makes.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	if free(netip.MustParseAddr("127.0.0.1"), l.Addr().(*net.TCPAddr).Port, false) {
		t.Fatal("a port with a listener counts as free")
	}
}
