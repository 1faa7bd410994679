//go:build amd64 && !purego

package kernels

// dotQ4KVNNI computes, with AVX-512 VNNI on 256-bit vectors, what dotRowsQ4KRef does:
// for r < len(dst), dst[r] = Σ_b xscale[b]·(d·Σ_j sc[j]·Σ q·x - dmin·Σ_j m[j]·Σ x) over
// the nb super-blocks of row r (rowBytes bytes at w[r*rowBytes:]), with x the Q8_K
// activation and xsum its 16-value sums. nb must be at least 1.
//
//go:noescape
func dotQ4KVNNI(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)

// dotQ4KAVX2 is dotQ4KVNNI with AVX2 (VPMADDUBSW/VPMADDWD).
//
//go:noescape
func dotQ4KAVX2(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)

// kquantDot wraps an assembly K-quant kernel as a dotRows after checking the sizes the
// assembly relies on.
func kquantDot(kernel kquantDotKernel, blockBytes int) func(dst []float32, w []byte, rowBytes int, a *Activation) {
	return func(dst []float32, w []byte, rowBytes int, a *Activation) {
		nb := rowBytes / blockBytes
		if len(dst) == 0 {
			return
		}
		if nb == 0 || nb*blockBytes != rowBytes || len(w) < len(dst)*rowBytes ||
			len(a.Q8K) < nb*qkK || len(a.Q8KScale) < nb || len(a.Q8KSum) < nb*16 {
			panic("kernels: K-quant dotRows: inconsistent sizes")
		}
		kernel(dst, w, rowBytes, nb, a.Q8K, a.Q8KScale, a.Q8KSum)
	}
}

// quantizeQ8KAVX2 is quantizeQ8KRef with AVX2 for len(scale) super-blocks: q and x
// hold 256 values per super-block, sum 16.
//
//go:noescape
func quantizeQ8KAVX2(q []int8, scale []float32, sum []int16, x []float32)

func init() {
	addReinit(func() {
		quantizeQ8K = quantizeQ8KRef
		if cpuHas.AVX2FMA {
			quantizeQ8K = func(q []int8, scale []float32, sum []int16, x []float32) {
				nb := len(scale)
				if len(q) < nb*qkK || len(sum) < nb*16 || len(x) < nb*qkK {
					panic("kernels: quantizeQ8K: inconsistent sizes")
				}
				quantizeQ8KAVX2(q, scale, sum, x)
			}
		}
	})
}

// dequantQ4KAVX2 is dequantQ4K with AVX2 for len(dst)/256 super-blocks (same results).
//
//go:noescape
func dequantQ4KAVX2(dst []float32, src []byte)

// kquantDequant wraps an assembly decoder after checking the sizes it relies on.
func kquantDequant(kernel func(dst []float32, src []byte), blockBytes int) func(dst []float32, src []byte) {
	return func(dst []float32, src []byte) {
		if len(dst)%qkK != 0 || len(src) < len(dst)/qkK*blockBytes {
			panic("kernels: K-quant dequant: inconsistent sizes")
		}
		kernel(dst, src)
	}
}

// kquantDotKernel is the signature of the K-quant dot-product kernels.
type kquantDotKernel = func(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)

// kquantFast installs into f the fastest of one K-quant format's kernels that cpuHas
// allows: the AVX2 decoder, and the VNNI or else the AVX2 dot product.
func kquantFast(f *format, blockBytes int, dequantAVX2 func(dst []float32, src []byte), dotAVX2, dotVNNI kquantDotKernel) {
	if cpuHas.AVX2FMA {
		f.dequant = kquantDequant(dequantAVX2, blockBytes)
	}
	switch {
	case cpuHas.AVX512VNNI:
		f.dotRows = kquantDot(dotVNNI, blockBytes)
	case cpuHas.AVX2FMA:
		f.dotRows = kquantDot(dotAVX2, blockBytes)
	}
}

// q4KFast installs the SIMD Q4_K kernels cpuHas allows into f.
func q4KFast(f *format) {
	kquantFast(f, q4KBytes, dequantQ4KAVX2, dotQ4KAVX2, dotQ4KVNNI)
}

// dotQ5KVNNI computes, with AVX-512 VNNI on 256-bit vectors, what dotRowsQ5KRef does
// (as dotQ4KVNNI, with 5-bit values).
//
//go:noescape
func dotQ5KVNNI(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)

// dotQ5KAVX2 is dotQ5KVNNI with AVX2 (VPMADDUBSW/VPMADDWD).
//
//go:noescape
func dotQ5KAVX2(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)

// dequantQ5KAVX2 is dequantQ5K with AVX2 for len(dst)/256 super-blocks (same results).
//
//go:noescape
func dequantQ5KAVX2(dst []float32, src []byte)

// q5KFast installs the SIMD Q5_K kernels cpuHas allows into f.
func q5KFast(f *format) {
	kquantFast(f, q5KBytes, dequantQ5KAVX2, dotQ5KAVX2, dotQ5KVNNI)
}

// dotQ6KVNNI computes, with AVX-512 VNNI on 256-bit vectors, what dotRowsQ6KRef does:
// for r < len(dst), dst[r] = Σ_b xscale[b]·d·Σ_k sc[k]·(Σ q·x - 32·xsum[k]) over the nb
// super-blocks of row r (rowBytes bytes at w[r*rowBytes:]). nb must be at least 1.
//
//go:noescape
func dotQ6KVNNI(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)

// dotQ6KAVX2 is dotQ6KVNNI with AVX2 (VPMADDUBSW/VPMADDWD).
//
//go:noescape
func dotQ6KAVX2(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)

// dequantQ6KAVX2 is dequantQ6K with AVX2 for len(dst)/256 super-blocks (same results).
//
//go:noescape
func dequantQ6KAVX2(dst []float32, src []byte)

// q6KFast installs the SIMD Q6_K kernels cpuHas allows into f.
func q6KFast(f *format) {
	kquantFast(f, q6KBytes, dequantQ6KAVX2, dotQ6KAVX2, dotQ6KVNNI)
}
