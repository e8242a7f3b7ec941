package refusing

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

func TestHeldPortRefusesAndStaysTaken(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr()
	// Bound while the listener serves: it still accepts.
	held, err := Hold(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Close() }()
	c, err := net.Dial("tcp4", addr.String())
	if err != nil {
		t.Fatalf("dial while the listener is open: %v", err)
	}
	_ = c.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := net.Dial("tcp4", addr.String()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after the listener closed: %v, want connection refused", err)
	}
	// Nobody else gets the port, with or without SO_REUSEPORT of their own
	// (a process of another user; the same user's Listen is the exception
	// SO_REUSEPORT makes, which tests do not use for that port).
	if other, err := net.Listen("tcp4", addr.String()); err == nil {
		_ = other.Close()
		t.Fatalf("another listener got the held port %v", addr)
	}

	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	free, err := net.Listen("tcp4", addr.String())
	if err != nil {
		t.Fatalf("the port stayed taken after Close: %v", err)
	}
	_ = free.Close()
}

func TestHoldRefusesAnAddressThatIsNotTCPv4(t *testing.T) {
	if _, err := Hold(&net.UnixAddr{Name: "x", Net: "unix"}); err == nil {
		t.Fatal("Hold took a unix address")
	}
	if _, err := Hold(&net.TCPAddr{IP: net.IPv6loopback, Port: 1}); err == nil {
		t.Fatal("Hold took an IPv6 address")
	}
}

func TestAddressRefuses(t *testing.T) {
	addr := Address(t)
	if _, err := net.Dial("tcp4", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
	if other, err := net.Listen("tcp4", addr); err == nil {
		_ = other.Close()
		t.Fatalf("another listener got %s", addr)
	}
}
