//go:build linux

package kernels

import (
	"syscall"
	"time"
)

// q8fThreadCPU returns the CPU time the calling OS thread has used, so single-threaded
// benchmarks on a shared machine can report rates that leave out descheduled time.
func q8fThreadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
