// Command certwatch is the workload of the node end-to-end test and the demo:
// it reads a mounted cert-manager Secret (tls.crt, tls.key, ca.crt), prints
// one "volume:" line saying what it found each time the files change, and
// serves TLS with the current certificate, reloading it without a restart.
//
// A line reads
//
//	volume: serial=<hex> dns=<a,b> notAfter=<RFC 3339> key=matches chain=verified ca-sha256=<hex>
//
// with key=mismatch or chain=failed (and a final err="...") when the files
// do not fit together. It never prints the private key.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	dir := flag.String("dir", "/etc/tls", "the mounted Secret")
	listen := flag.String("listen", "", "serve TLS here (e.g. 127.0.0.1:8443); empty: only report")
	interval := flag.Duration("interval", time.Second, "how often to look for changed files")
	flag.Parse()
	log.SetFlags(0)
	log.SetOutput(os.Stdout)

	var current atomic.Pointer[tls.Certificate]
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			log.Fatalf("listen %s: %v", *listen, err)
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := current.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("no certificate loaded yet")
		}}
		go serve(tls.NewListener(ln, cfg))
		log.Printf("serving TLS on %s", ln.Addr())
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	var seen []byte
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		crt, key, ca, err := read(*dir)
		switch {
		case err != nil:
			if seen != nil || !os.IsNotExist(err) {
				log.Printf("reading %s: %v", *dir, err)
			}
		case !bytes.Equal(seen, digest(crt, key, ca)):
			seen = digest(crt, key, ca)
			line, pair := report(crt, key, ca)
			if pair != nil {
				current.Store(pair)
			}
			log.Print(line)
		}
		select {
		case <-stop:
			log.Print("stopping")
			return
		case <-tick.C:
		}
	}
}

func serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Printf("accept: %v", err)
			return
		}
		go func() {
			defer func() { _ = conn.Close() }()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if tc, ok := conn.(*tls.Conn); ok && tc.Handshake() == nil {
				_, _ = conn.Write([]byte("hello from certwatch\n"))
			}
		}()
	}
}

// read takes the three files from one generation of the volume: kubelet
// swaps the ..data symlink atomically, so reading through its target never
// mixes an old certificate with a new key.
func read(dir string) (crt, key, ca []byte, err error) {
	if target, lerr := filepath.EvalSymlinks(filepath.Join(dir, "..data")); lerr == nil {
		dir = target
	}
	if crt, err = os.ReadFile(filepath.Join(dir, "tls.crt")); err != nil {
		return nil, nil, nil, err
	}
	if key, err = os.ReadFile(filepath.Join(dir, "tls.key")); err != nil {
		return nil, nil, nil, err
	}
	if ca, err = os.ReadFile(filepath.Join(dir, "ca.crt")); err != nil {
		return nil, nil, nil, err
	}
	return crt, key, ca, nil
}

func digest(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	return h.Sum(nil)
}

// report describes the files in one line and returns the pair to serve when
// the key matches the certificate.
func report(crtPEM, keyPEM, caPEM []byte) (string, *tls.Certificate) {
	var b strings.Builder
	b.WriteString("volume:")
	var problems []string
	block, _ := pem.Decode(crtPEM)
	var leaf *x509.Certificate
	if block != nil {
		leaf, _ = x509.ParseCertificate(block.Bytes)
	}
	if leaf == nil {
		return `volume: serial=none err="tls.crt holds no certificate"`, nil
	}
	fmt.Fprintf(&b, " serial=%s dns=%s notAfter=%s", leaf.SerialNumber.Text(16), strings.Join(leaf.DNSNames, ","), leaf.NotAfter.UTC().Format(time.RFC3339))

	pair, err := tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		b.WriteString(" key=mismatch")
		problems = append(problems, "tls.key: "+err.Error())
	} else {
		b.WriteString(" key=matches")
	}

	roots := x509.NewCertPool()
	var caCert *x509.Certificate
	if cb, _ := pem.Decode(caPEM); cb != nil {
		caCert, _ = x509.ParseCertificate(cb.Bytes)
	}
	if caCert != nil {
		roots.AddCert(caCert)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil || caCert == nil {
		b.WriteString(" chain=failed")
		if caCert == nil {
			err = errors.New("ca.crt holds no certificate")
		}
		problems = append(problems, "chain: "+err.Error())
	} else {
		b.WriteString(" chain=verified")
	}
	if caCert != nil {
		sum := sha256.Sum256(caCert.Raw)
		fmt.Fprintf(&b, " ca-sha256=%s", hex.EncodeToString(sum[:]))
	}
	if len(problems) > 0 {
		fmt.Fprintf(&b, " err=%s", strconv.Quote(strings.Join(problems, "; ")))
		return b.String(), nil
	}
	return b.String(), &pair
}
