package scepclient

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"testing"
)

// TestPKIOperationIsNeverResentByTheTransport: Go's Transport silently sends an
// idempotent request (GET) again on a new connection when a reused one
// fails before the first answer byte. For a PKIOperation the server may
// already have acted: a second PKCSReq spends a one-time password (NDES
// refuses it) or enrolls twice. The server here answers GetCACaps on a
// keep-alive connection, then reads the PKIOperation on that same
// connection and drops it: exactly one PKIOperation may arrive, over GET
// and over POST.
func TestPKIOperationIsNeverResentByTheTransport(t *testing.T) {
	for _, post := range []bool{false, true} {
		name := "GET"
		if post {
			name = "POST"
		}
		t.Run(name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			var mu sync.Mutex
			pkiOps, conns := 0, 0
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					mu.Lock()
					conns++
					mu.Unlock()
					go func() {
						defer func() { _ = conn.Close() }()
						r := bufio.NewReader(conn)
						for {
							req, err := http.ReadRequest(r)
							if err != nil {
								return
							}
							if req.URL.Query().Get("operation") == OpPKIOperation {
								mu.Lock()
								pkiOps++
								mu.Unlock()
								// Acted on, then the connection dies before
								// the answer (a reset: SO_LINGER 0).
								if tc, ok := conn.(*net.TCPConn); ok {
									_ = tc.SetLinger(0)
								}
								return
							}
							_, _ = conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nPOST\n"))
						}
					}()
				}
			}()

			c, _ := newTestClient(t, Config{URL: "http://" + l.Addr().String() + "/scep"})
			// The keep-alive connection the PKIOperation then reuses.
			if _, err := c.GetCACaps(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.pkiOperation(ctx(t), post, []byte{0x30, 0x03, 0x02, 0x01, 0x01}); err == nil {
				t.Fatal("the dropped PKIOperation succeeded")
			}
			mu.Lock()
			defer mu.Unlock()
			if pkiOps != 1 {
				t.Errorf("the server received %d PKIOperations over %d connections, want 1: the transport sent it again", pkiOps, conns)
			}
		})
	}
}
