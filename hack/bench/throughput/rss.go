package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/scep-operator/scep-operator/test/procstatus"
)

// rssStats is a process's resident memory over a run, in KiB.
type rssStats struct {
	start, peak, end int
}

func (r rssStats) String() string {
	if r.start == 0 {
		return "–"
	}
	mib := func(k int) string { return fmt.Sprintf("%.1f", float64(k)/1024) }
	return fmt.Sprintf("%s → %s MiB (peak %s)", mib(r.start), mib(r.end), mib(r.peak))
}

// rssSampler reads a process's VmRSS every two seconds until stopped.
type rssSampler struct {
	pid    int
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	stats  rssStats
}

func sampleRSS(ctx context.Context, pid int) *rssSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &rssSampler{pid: pid, cancel: cancel, done: make(chan struct{})}
	s.read()
	go func() {
		defer close(s.done)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.read()
			}
		}
	}()
	return s
}

func (s *rssSampler) read() {
	kib := procstatus.RSS(s.pid)
	if kib == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stats.start == 0 {
		s.stats.start = kib
	}
	s.stats.peak = max(s.stats.peak, kib)
	s.stats.end = kib
}

// stop ends the sampling after one last reading.
func (s *rssSampler) stop() rssStats {
	s.cancel()
	<-s.done
	s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}
