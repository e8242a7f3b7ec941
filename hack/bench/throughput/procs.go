package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's utime and stime; it
// is 100 on every Linux build this runs on.
const clockTicks = 100

// processCPU returns the user plus system CPU time pid has used so far.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it do not.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// childrenNamed finds the direct children of this process by command name
// (envtest starts kube-apiserver and etcd without telling their pids).
func childrenNamed(name string) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 || s[open+1:end] != name {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == os.Getpid() {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			pids = append(pids, pid)
		}
	}
	return pids
}

// machineCPU returns the busy and total CPU time of the whole machine
// (all cores) from /proc/stat.
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var idle int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i >= 8 { // guest time is already counted in user
			break
		}
		total += time.Duration(n)
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	busy = total - time.Duration(idle)
	return busy * time.Second / clockTicks, total * time.Second / clockTicks
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// child is a process the bench started: the operator, cert-manager, a SCEP
// server or the ceiling issuer, each alone so its CPU time is its own.
type child struct {
	name string
	cmd  *exec.Cmd
	// ready holds the fields a subcommand printed after "READY" once it was
	// serving (e.g. the SCEP server's URL).
	ready []string
	done  chan struct{}
}

// startChild runs path with args, its output going to <logDir>/<name>.log.
// With waitReady it returns once the child printed a line starting with
// READY on stdout. The child gets SIGTERM if this process dies.
func startChild(ctx context.Context, name, logDir, path string, args, env []string, waitReady bool) (*child, error) {
	logFile, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var stdout io.ReadCloser
	if waitReady {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	} else {
		cmd.Stdout = logFile
	}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(c.done)
	}()
	if !waitReady {
		return c, nil
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
			_, _ = fmt.Fprintln(logFile, sc.Text())
		}
		close(lines)
	}()
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				c.stop()
				return nil, fmt.Errorf("%s exited before it was ready (see %s)", name, logFile.Name())
			}
			if f := strings.Fields(l); len(f) > 0 && f[0] == "READY" {
				c.ready = f[1:]
				return c, nil
			}
		case <-timeout.C:
			c.stop()
			return nil, fmt.Errorf("%s was not ready within 2 minutes (see %s)", name, logFile.Name())
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		}
	}
}

// pid is the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM, and SIGKILL after 15 seconds.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
