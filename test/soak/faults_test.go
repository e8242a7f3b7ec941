//go:build soak

package soak

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// inject applies a random fault every 10-30 s until ctx ends; each lasts
// its own while and is undone before the next.
func (h *harness) inject(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.between(10*time.Second, 30*time.Second)):
		}
		kinds := []string{"kill-leader", "kill-standby", "apiserver", "etcd", "server-down", "server-chaos", "server-restart"}
		if *only != "" {
			kinds = strings.Split(*only, ",")
		}
		switch kinds[h.intn(len(kinds))] {
		case "kill-leader":
			h.killManager(true)
		case "kill-standby":
			h.killManager(false)
		case "apiserver":
			h.stopAPIServer(ctx, h.between(5*time.Second, min(60*time.Second, *duration/6)))
		case "etcd":
			h.restartEtcd()
		case "server-down":
			srv := h.servers[h.intn(len(h.servers))]
			h.serverFault(ctx, srv, Down, h.between(5*time.Second, 20*time.Second))
		case "server-chaos":
			srv := h.servers[h.intn(len(h.servers))]
			f := []Fault{Slow, Reset, ServerError, CutAfterSend}[h.intn(4)]
			h.serverFault(ctx, srv, f, h.between(10*time.Second, 30*time.Second))
		case "server-restart":
			h.restartServer(ctx, h.servers[h.intn(len(h.servers))], h.between(2*time.Second, 15*time.Second))
		}
	}
}

// loggedFault is a fault with its time span and, for a server fault, the
// server: what a duplicate is matched against.
type loggedFault struct {
	kind     string
	server   string // "" for a fault of the cluster or the operator
	from, to time.Time
}

func (f loggedFault) String() string {
	where := ""
	if f.server != "" {
		where = " " + f.server
	}
	return fmt.Sprintf("%s%s %s-%s", f.kind, where, f.from.Format("15:04:05.0"), f.to.Format("15:04:05.0"))
}

func (h *harness) count(fault string) {
	h.mu.Lock()
	h.faults[fault]++
	h.mu.Unlock()
}

// record logs a fault's span for the accounting.
func (h *harness) record(kind, server string, from, to time.Time) {
	h.mu.Lock()
	h.faultLog = append(h.faultLog, loggedFault{kind: kind, server: server, from: from, to: to})
	h.mu.Unlock()
}

// restartServer kills a SCEP server (its connections are cut, requests
// in flight get no answer), keeps it down for d and starts it again with
// its data.
func (h *harness) restartServer(ctx context.Context, srv *server, d time.Duration) {
	from := time.Now()
	h.logf("fault: %s killed, restarted in %s", srv.name, d.Round(time.Second))
	h.count("server-restart")
	srv.kill()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	if err := srv.restart(); err != nil {
		h.t.Errorf("restarting %s: %v", srv.name, err)
		return
	}
	h.record("server-restart", srv.name, from, time.Now())
	h.logf("  %s back", srv.name)
}

// killManager SIGKILLs the leader (or the standby); the supervisor starts
// it again 2-8 s later.
func (h *harness) killManager(leader bool) {
	lead := h.leader()
	target := ""
	for name := range h.snapshotManagers() {
		if (name == lead) == leader {
			target = name
		}
	}
	if target == "" {
		h.logf("fault: no %s to kill (leader %q)", map[bool]string{true: "leader", false: "standby"}[leader], lead)
		return
	}
	h.mu.Lock()
	slot := h.managers[target]
	slot.restartAt = time.Now().Add(h.between(2*time.Second, 8*time.Second))
	proc := slot.proc
	h.mu.Unlock()
	role := map[bool]string{true: "leader", false: "standby"}[leader]
	h.logf("fault: SIGKILL %s (manager %s, pid %d)", role, target, proc.PID())
	h.count("kill-" + role)
	h.record("kill-"+role, "", time.Now(), slot.restartAt)
	_ = proc.Kill()
}

// stopAPIServer stops kube-apiserver for d (etcd keeps the data), then
// starts it again on the same address with the same certificates.
func (h *harness) stopAPIServer(ctx context.Context, d time.Duration) {
	api := h.st.Env.Environment.ControlPlane.GetAPIServer()
	h.logf("fault: kube-apiserver stopped for %s", d.Round(time.Second))
	h.count("apiserver-down")
	from := time.Now()
	defer func() { h.record("apiserver-down", "", from, time.Now()) }()
	if err := api.Stop(); err != nil {
		h.logf("  stopping kube-apiserver: %v", err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	if err := api.Start(); err != nil {
		h.t.Errorf("starting kube-apiserver again: %v", err)
		return
	}
	h.logf("  kube-apiserver back")
}

// restartEtcd stops etcd and starts it again with its data.
func (h *harness) restartEtcd() {
	etcd := h.st.Env.Environment.ControlPlane.Etcd
	h.logf("fault: etcd restarted")
	h.count("etcd-restart")
	from := time.Now()
	defer func() { h.record("etcd-restart", "", from, time.Now()) }()
	if err := etcd.Stop(); err != nil {
		h.logf("  stopping etcd: %v", err)
	}
	if err := etcd.Start(); err != nil {
		h.t.Errorf("starting etcd again: %v", err)
	}
}

// serverFault sets a fault on a server's proxy for d.
func (h *harness) serverFault(ctx context.Context, srv *server, f Fault, d time.Duration) {
	h.logf("fault: %s %s for %s", srv.name, f, d.Round(time.Second))
	h.count(f.String())
	from := time.Now()
	defer func() { h.record(f.String(), srv.name, from, time.Now()) }()
	if err := srv.proxy.Set(f); err != nil {
		h.t.Errorf("%s: %v", srv.name, err)
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	if err := srv.proxy.Set(Healthy); err != nil {
		h.t.Errorf("%s: %v", srv.name, err)
	}
}

// heal undoes every fault: servers healthy, both managers running.
func (h *harness) heal(ctx context.Context) {
	for _, srv := range h.servers {
		if err := srv.proxy.Set(Healthy); err != nil {
			h.t.Errorf("%s: %v", srv.name, err)
		}
	}
	for name, slot := range h.snapshotManagers() {
		if exited, _ := slot.proc.Exited(); exited {
			h.startManager(name)
		}
	}
}
