//go:build !linux

package node

import (
	"errors"
	"os"
	"syscall"
)

var errNotLinux = errors.New("not Linux")

func lockFile(*os.File) (bool, error)         { return false, errNotLinux }
func unlockFile(*os.File) error               { return errNotLinux }
func mountsUnder(...string) ([]string, error) { return nil, nil }
func unmount(string) error                    { return errNotLinux }
func setDeathSignal(*syscall.SysProcAttr)     {}

const haveNodeSupport = false
