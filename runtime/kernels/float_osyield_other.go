//go:build !linux

package kernels

import "runtime"

// osYield gives the processor to other goroutines (no portable thread yield here).
func osYield() { runtime.Gosched() }
