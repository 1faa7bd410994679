//go:build linux

package sparse

import (
	"syscall"
	"time"
)

// threadCPU returns the CPU time the calling OS thread has used. On a machine shared
// with other work, the single-threaded benchmarks report it beside wall time, which
// also counts the time the thread waited for a core.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
