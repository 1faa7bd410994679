//go:build amd64 && !purego

package kernels

// dot4I8VNNI sets out[r] = sum_{j<n} int32(w[r*stride+j]) * int32(x[j]) for r < 4 (rows
// of int8 at w, stride bytes apart; x bytes 0..255): one VPDPBUSD per row and 64
// elements, n a multiple of 64.
//
//go:noescape
func dot4I8VNNI(w *int8, stride int, x *uint8, n int, out *int32)

// dot8I8VNNI sets out[8g+r] = sum_{j<n} int32(w[(8g+r)*stride+j]) * int32(x[j]) for
// r < 8 and g < groups: dot4I8VNNI over groups of 8 consecutive rows, in one call.
//
//go:noescape
func dot8I8VNNI(w *int8, stride int, x *uint8, n int, out *int32, groups int)

// dotI8Kernel returns the int8 kernels cpuHas allows, nil for the reference.
func dotI8Kernel() *dotI8Kernels {
	if cpuHas.AVX512VNNI {
		return &dotI8VNNI
	}
	return nil
}

var dotI8VNNI = dotI8Kernels{four: dot4I8VNNI, eight: dot8I8VNNI}
