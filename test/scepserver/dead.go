package scepserver

import (
	"net"
	"testing"
)

// DeadURL returns a SCEP URL on a loopback port nothing listens on, so
// that connections are refused at once: a server that is down.
func DeadURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/scep"
}
