//go:build !linux

package kernels

import "time"

// q8fThreadCPU is not available here; benchmarks then report wall-time rates only.
func q8fThreadCPU() time.Duration { return 0 }
