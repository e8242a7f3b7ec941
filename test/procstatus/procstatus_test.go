package procstatus_test

import (
	"os"
	"testing"

	"github.com/scep-operator/scep-operator/test/procstatus"
)

func TestRSS(t *testing.T) {
	self, byPID := procstatus.RSS(procstatus.Self), procstatus.RSS(os.Getpid())
	if self <= 0 || byPID <= 0 {
		t.Fatalf("RSS of this process: %d KiB (self), %d KiB (by pid)", self, byPID)
	}
	if peak := procstatus.PeakRSS(procstatus.Self); peak < self/2 {
		t.Errorf("peak RSS %d KiB below half the current %d KiB", peak, self)
	}
	if got := procstatus.KiB(procstatus.Self, "NoSuchField"); got != 0 {
		t.Errorf("a missing field read as %d", got)
	}
	if got := procstatus.RSS(1 << 30); got != 0 {
		t.Errorf("a process that does not exist: %d KiB", got)
	}
}
