package scepserver

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// A held port refuses connections, and no listener can take it: Go's
// listeners set SO_REUSEADDR, which Linux honours only when both sockets
// set it.
func TestRefusingAddr(t *testing.T) {
	addr := RefusingAddr(t)
	_, err := net.Dial("tcp", addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v", err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("a listener took the held port %s", addr)
	}
}
