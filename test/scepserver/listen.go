package scepserver

import (
	"fmt"
	"net"
	"time"
)

// ListenAgain listens on addr, a loopback address a test server held a
// moment ago (it was killed, or its listener closed), so that it comes back
// where its clients expect it. Another process rarely takes the port in
// between; ListenAgain retries for up to five seconds.
func ListenAgain(addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("listening on %s again: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
