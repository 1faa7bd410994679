//go:build !amd64 || purego

package kernels

func addExpNeg512(sum, top *float64, x *float32, n int, z float64, c *[12]float64) {
	panic("kernels: addExpNeg512 without AVX-512")
}

func expNegVecAvailable() bool { return false }
