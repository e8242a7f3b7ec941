package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// BuildManager builds cmd/manager into dir and returns the binary's path.
func (s *Stack) BuildManager(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = s.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/manager: %v: %s", err, out)
	}
	return bin, nil
}

// OperatorKubeconfig writes a kubeconfig that acts as the chart's
// ServiceAccount (by impersonation: envtest has no token issuer), so a
// manager process started with it has exactly the chart's RBAC.
//
// The file is replaced atomically (written beside it, then renamed): each
// manager process started rewrites it, and a process starting a moment
// earlier may still be reading it. Written in place, the truncation once
// left a starting replica an empty file ("no configuration has been
// provided", TestLeaderHandover).
func (s *Stack) OperatorKubeconfig() (string, error) {
	cfg := s.Env.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["operator"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
		Impersonate:       s.ServiceAccount,
		ImpersonateGroups: []string{"system:serviceaccounts", "system:serviceaccounts:" + s.opts.ReleaseNamespace, "system:authenticated"},
	}
	kc.Contexts["operator"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "operator"}
	kc.CurrentContext = "operator"
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(s.WorkDir, "operator.kubeconfig-*")
	if err != nil {
		return "", err
	}
	_, err = tmp.Write(data)
	path := filepath.Join(s.WorkDir, "operator.kubeconfig")
	if err = errors.Join(err, tmp.Close()); err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return "", err
	}
	return path, nil
}

// ChartManagerArgs are the arguments the chart's Deployment gives the
// manager container.
func (s *Stack) ChartManagerArgs() ([]string, error) {
	for _, o := range s.Rendered {
		if o.GetKind() != "Deployment" {
			continue
		}
		containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		if err != nil || len(containers) == 0 {
			return nil, fmt.Errorf("the chart's Deployment has no containers: %v", err)
		}
		c, _ := containers[0].(map[string]any)
		args, _, err := unstructured.NestedStringSlice(c, "args")
		return args, err
	}
	return nil, errors.New("the chart rendered no Deployment")
}

// ManagerProcess is cmd/manager running as a child process, so a test can
// kill it with SIGKILL as a node failure or an OOM kill would.
type ManagerProcess struct {
	// Name tells the processes of one test apart in messages.
	Name string

	cmd  *exec.Cmd
	logs *LogBuffer
	done chan struct{}
	err  error
}

// StartManagerProcess runs bin with the chart's Deployment arguments, then
// extra (later flags win), as the chart's ServiceAccount. Its output is
// kept for Logs; it is killed when ctx ends.
func (s *Stack) StartManagerProcess(ctx context.Context, bin, name string, extra ...string) (*ManagerProcess, error) {
	kubeconfig, err := s.OperatorKubeconfig()
	if err != nil {
		return nil, err
	}
	args, err := s.ChartManagerArgs()
	if err != nil {
		return nil, err
	}
	// No fixed ports: several managers run on one machine.
	args = append(args, "--metrics-bind-address=0", "--health-probe-bind-address=0")
	args = append(args, extra...)
	p := &ManagerProcess{Name: name, logs: &LogBuffer{}, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	s.stops = append(s.stops, func() { _ = p.Kill() })
	return p, nil
}

// Kill sends SIGKILL and waits for the process to end: no deferred
// function, no lease release, no graceful shutdown.
func (p *ManagerProcess) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}

// Exited reports whether the process has ended, and how.
func (p *ManagerProcess) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// PID is the process's ID.
func (p *ManagerProcess) PID() int { return p.cmd.Process.Pid }

// Logs returns what the process wrote so far (stdout and stderr).
func (p *ManagerProcess) Logs() string { return p.logs.String() }

// LogBuffer keeps what a process or logger writes, safe for one writer and
// concurrent readers.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
