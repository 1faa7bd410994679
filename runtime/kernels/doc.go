// Package kernels holds squeeze's numeric hot loops: matrix products of GGUF weight
// formats against f32 activations, and the element-wise operations of a transformer
// (RMSNorm, softmax, RoPE, SiLU, f16 conversion).
//
// Every fast path has a pure-Go reference twin. On amd64 the package picks AVX2+FMA or
// AVX-512 code at start-up by CPU feature detection; the build tag purego turns all
// assembly off. Tests run every implementation against the reference on random inputs.
//
// # Layout
//
// Weights are row-major: a Matrix of Rows x Cols stores each row as Cols/BlockSize
// consecutive blocks of its gguf.Type. Activations are plain []float32, token-major:
// a batch of n vectors of length Cols is x[i*Cols:(i+1)*Cols].
package kernels
