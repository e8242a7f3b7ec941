package scepserver

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// DeadURL returns a SCEP URL on a loopback port nothing listens on, so
// that connections are refused at once: a server that is down.
//
// The port stays bound, without listening, until the test ends: a bound
// socket that does not listen refuses connections as a free port does, and
// the kernel hands the port to no other server meanwhile (a port picked and
// let go was once given to another test's server, which then counted
// requests its test never caused).
func DeadURL(t testing.TB) string {
	t.Helper()
	return "http://" + RefusingAddr(t) + "/scep"
}

// RefusingAddr binds a loopback TCP port without listening on it, and
// returns its address: connections to it are refused until the test ends,
// and no other socket can take it. It sets no SO_REUSEADDR, so Linux lets
// no listener bind the port while it is held.
func RefusingAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("binding a loopback port: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
