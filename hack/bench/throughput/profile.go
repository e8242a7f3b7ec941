package main

import (
	"context"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"time"

	"github.com/scep-operator/scep-operator/test/pprofsave"
)

// servePprof serves Go's /debug/pprof on a free loopback port until ctx
// ends, and returns its address: cert-manager's subcommand uses it, so that
// the bench can profile cert-manager as it does the operator.
func servePprof(ctx context.Context) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return l.Addr().String(), nil
}

// startProfile records process's CPU profile for secs seconds from its
// pprof address into -pprof-dir as <process>-<run>.pprof; the channel
// closes when it is written (nil: no profile taken).
func (b *bench) startProfile(process, run, addr string, secs int) chan struct{} {
	if b.opts.pprofDir == "" || addr == "" {
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		path := filepath.Join(b.opts.pprofDir, process+"-"+run+".pprof")
		if err := pprofsave.CPU(context.Background(), addr, secs, path); err != nil {
			progress("pprof of %s: %v", process, err)
			return
		}
		progress("pprof: %s (%d s)", path, secs)
	}()
	return done
}
