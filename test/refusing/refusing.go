// Package refusing gives tests a loopback port that refuses connections
// and stays taken.
//
// Closing a server to make its port refuse connections frees the port: in
// a busy test run another listener may get it in the meantime, and the
// test then meets that listener instead of a refusal. A socket bound to
// the port without listening keeps it: connections get a reset (connection
// refused), and the kernel gives the port to no other bind. It can be
// bound beside a live listener only if both set SO_REUSEPORT, which Listen
// does.
package refusing

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Listen listens on a free loopback port (127.0.0.1), ready for Hold.
func Listen() (net.Listener, error) {
	lc := net.ListenConfig{Control: reusePort}
	return lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
}

// Hold binds a socket, without listening, to the address of a Listen
// listener (which may still be open). Once the listener is closed,
// connections to the address are refused until the returned Port is
// closed.
func Hold(addr net.Addr) (*Port, error) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.To4() == nil {
		return nil, fmt.Errorf("refusing: %v is not a TCP/IPv4 address", addr)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("refusing: socket: %w", err)
	}
	sa := &syscall.SockaddrInet4{Port: tcp.Port}
	copy(sa.Addr[:], tcp.IP.To4())
	if err := setReusePort(fd); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Bind(fd, sa); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("refusing: bind %v: %w", addr, err)
	}
	return &Port{fd: fd}, nil
}

// Address is a loopback address ("127.0.0.1:port") that refuses
// connections and stays taken until the test ends.
func Address(t testing.TB) string {
	t.Helper()
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	held, err := Hold(l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = held.Close() })
	return l.Addr().String()
}

// Port is a bound socket that does not listen.
type Port struct{ fd int }

// Close frees the port.
func (p *Port) Close() error { return syscall.Close(p.fd) }

func reusePort(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) { err = setReusePort(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

func setReusePort(fd int) error {
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fmt.Errorf("refusing: SO_REUSEPORT: %w", err)
	}
	return nil
}
