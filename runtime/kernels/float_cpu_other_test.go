//go:build !linux

package kernels

import "time"

// threadCPU is unavailable here: rates are reported against wall time only.
func threadCPU() time.Duration { return 0 }
