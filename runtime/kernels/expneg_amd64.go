//go:build amd64 && !purego

package kernels

// addExpNeg512 is AddExpNeg for n (a multiple of 8) elements, 8 at a time.
//
//go:noescape
func addExpNeg512(sum, top *float64, x *float32, n int, z float64, c *[12]float64)

func expNegVecAvailable() bool { return cpuHas.AVX512 }
