//go:build !amd64 || purego

package kernels

// attnExp2For returns nil: the softmax step runs in Go.
func attnExp2For() (func(x *float32, n int, m float32) float32, int) { return nil, 0 }

// attnMaxFor returns nil: the row maximum uses the ops kernels or Go.
func attnMaxFor() (func(x *float32, n int) float32, int) { return nil, 0 }
