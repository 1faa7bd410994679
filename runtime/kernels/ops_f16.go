package kernels

import "unsafe"

// F16ToF32Slice sets dst[i] = F16ToF32(src[i]) for i < len(src).
func F16ToF32Slice(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	k := fk
	nv := 0
	if k != nil {
		nv = len(src) &^ (k.width - 1)
		k.widenF16(unsafe.SliceData(dst), unsafe.Pointer(unsafe.SliceData(src)), nv)
	}
	for i := nv; i < len(src); i++ {
		dst[i] = F16ToF32(src[i])
	}
}

// F32ToF16Slice sets dst[i] = F32ToF16(src[i]) for i < len(src).
func F32ToF16Slice(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	k := fk
	nv := 0
	if k != nil {
		nv = len(src) &^ (k.width - 1)
		k.narrowF16(unsafe.Pointer(unsafe.SliceData(dst)), unsafe.SliceData(src), nv)
	}
	for i := nv; i < len(src); i++ {
		dst[i] = F32ToF16(src[i])
	}
}

// DotF16 returns the inner product of x and the halves y[:len(x)].
func DotF16(x []float32, y []uint16) float32 {
	y = y[:len(x)]
	k := fk
	nv := 0
	var s float32
	if k != nil {
		nv = len(x) &^ (k.width - 1)
		s = k.dot[kindF16](unsafe.SliceData(x), unsafe.Pointer(unsafe.SliceData(y)), nv)
	}
	for i := nv; i < len(x); i++ {
		s += x[i] * F16ToF32(y[i])
	}
	return s
}

// AxpyF16 sets y[i] += alpha * F16ToF32(x[i]) for i < len(x).
func AxpyF16(alpha float32, x []uint16, y []float32) {
	y = y[:len(x)]
	k := fk
	nv := 0
	if k != nil {
		nv = len(x) &^ (k.width - 1)
		k.axpyF16(alpha, unsafe.Pointer(unsafe.SliceData(x)), unsafe.SliceData(y), nv)
	}
	for i := nv; i < len(x); i++ {
		y[i] += alpha * F16ToF32(x[i])
	}
}
