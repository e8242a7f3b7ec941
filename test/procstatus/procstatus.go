// Package procstatus reads a Linux process's memory figures from
// /proc/<pid>/status, for the benches and the soak that report a
// process's resident memory the way a cluster admin sees a pod's.
package procstatus

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Self names this process in the functions below.
const Self = 0

// RSS returns pid's resident set size (VmRSS) in KiB; 0 when it cannot be
// read (the process has exited).
func RSS(pid int) int { return KiB(pid, "VmRSS") }

// PeakRSS returns pid's highest resident set size so far (VmHWM) in KiB.
func PeakRSS(pid int) int { return KiB(pid, "VmHWM") }

// KiB returns one kB-valued field of pid's status file (VmRSS, VmHWM,
// VmSize, ...); 0 when it cannot be read. Self (0) is this process.
func KiB(pid int, field string) int {
	path := "/proc/self/status"
	if pid != Self {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			if fields := strings.Fields(v); len(fields) > 0 {
				n, _ := strconv.Atoi(fields[0])
				return n
			}
		}
	}
	return 0
}
