//go:build linux

package threadcpu

import (
	"syscall"
	"time"
)

// Now returns the CPU time (user and system) the calling OS thread has used, or 0 where
// it cannot be read. Only differences between two calls on one locked thread mean
// anything.
func Now() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
