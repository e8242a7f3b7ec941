package scepserver

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
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

// ServeAgain starts a new httptest server with config where old served
// (ListenAgain on its address; with TLS if old had it, with the same
// certificates), after old was closed: a killed server restarted.
func ServeAgain(old *httptest.Server, config *http.Server) (*httptest.Server, error) {
	l, err := ListenAgain(old.Listener.Addr().String())
	if err != nil {
		return nil, err
	}
	srv := &httptest.Server{Listener: l, Config: config}
	if old.TLS == nil {
		srv.Start()
		return srv, nil
	}
	srv.TLS = old.TLS.Clone()
	srv.StartTLS()
	return srv, nil
}

// Kill closes srv as a killed process would: every connection is cut,
// even one whose request is being served, then the listener.
func Kill(srv *httptest.Server) {
	srv.CloseClientConnections()
	srv.Close()
}
