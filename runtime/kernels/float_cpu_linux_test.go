//go:build linux

package kernels

import (
	"syscall"
	"time"
)

// threadCPU returns the CPU time the calling OS thread has used. On a machine shared
// with other work, single-threaded benchmarks report rates against it as well as
// against wall time, since the latter counts time the thread spent descheduled.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
