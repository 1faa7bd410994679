package model

import (
	"errors"
	"fmt"

	"squeeze/runtime/kernels"
)

// ErrContextFull means a Forward call would run past the end of its Cache. The error
// says by how many tokens.
var ErrContextFull = errors.New("model: context full")

// CacheType is the element type a Cache stores keys and values in.
type CacheType int

// The KV cache storage types.
const (
	// CacheF32 stores keys and values as float32: exact, twice the memory of CacheF16.
	CacheF32 CacheType = iota
	// CacheF16 stores keys and values as IEEE half floats, as llama.cpp does by default.
	CacheF16
)

// String returns "f32" or "f16".
func (t CacheType) String() string {
	switch t {
	case CacheF32:
		return "f32"
	case CacheF16:
		return "f16"
	}
	return fmt.Sprintf("CacheType(%d)", int(t))
}

// Cache holds one sequence's keys (after RoPE) and values for every layer, and the
// scratch memory of the forward passes that fill it. A Cache belongs to the Model that
// made it and is used by one goroutine at a time.
//
// Layout: for each layer and key/value head, the positions are contiguous, each a
// HeadDim-long vector, so attention reads one span per head.
type Cache struct {
	m    *Model
	kind CacheType
	cap  int // positions
	n    int // positions filled

	k32, v32 []float32 // CacheF32
	k16, v16 []uint16  // CacheF16

	ws workspace
}

// NewCache returns an empty cache for up to maxTokens positions; maxTokens <= 0 means the
// model's context length. maxTokens may exceed the trained context (RoPE extrapolates,
// with worse quality).
func (m *Model) NewCache(maxTokens int, kind CacheType) (*Cache, error) {
	if maxTokens <= 0 {
		maxTokens = m.Config.ContextLength
	}
	cfg := &m.Config
	size := cfg.Layers * cfg.KVHeads * maxTokens * cfg.HeadDim
	if maxTokens > 1<<30 || size/maxTokens != cfg.Layers*cfg.KVHeads*cfg.HeadDim {
		return nil, fmt.Errorf("model: a cache of %d tokens is too large", maxTokens)
	}
	c := &Cache{m: m, kind: kind, cap: maxTokens}
	switch kind {
	case CacheF32:
		c.k32, c.v32 = make([]float32, size), make([]float32, size)
	case CacheF16:
		c.k16, c.v16 = make([]uint16, size), make([]uint16, size)
	default:
		return nil, fmt.Errorf("model: unknown cache type %v", kind)
	}
	return c, nil
}

// Model returns the model the cache belongs to.
func (c *Cache) Model() *Model { return c.m }

// Type returns the cache's storage type.
func (c *Cache) Type() CacheType { return c.kind }

// Len returns the number of positions filled: the position the next token will take.
func (c *Cache) Len() int { return c.n }

// Cap returns the number of positions the cache can hold.
func (c *Cache) Cap() int { return c.cap }

// Truncate drops every position from n on, so the next Forward continues at position n
// (speculative decoding rolls back rejected tokens this way). n must be in [0, Len()].
func (c *Cache) Truncate(n int) error {
	if n < 0 || n > c.n {
		return fmt.Errorf("model: truncate a cache of %d positions to %d", c.n, n)
	}
	c.n = n
	return nil
}

// Reset empties the cache, keeping its memory.
func (c *Cache) Reset() { c.n = 0 }

// offset returns the index of position pos of the given layer and key/value head.
func (c *Cache) offset(layer, head, pos int) int {
	cfg := &c.m.Config
	return ((layer*cfg.KVHeads+head)*c.cap + pos) * cfg.HeadDim
}

// store writes n tokens' keys and values (each n x KVDim, token-major) of one layer at
// positions pos..pos+n-1.
func (c *Cache) store(layer, pos, n int, k, v []float32) {
	cfg := &c.m.Config
	hd, kvDim := cfg.HeadDim, cfg.KVDim()
	for h := range cfg.KVHeads {
		at := c.offset(layer, h, pos)
		for i := range n {
			src := i*kvDim + h*hd
			dst := at + i*hd
			switch c.kind {
			case CacheF32:
				copy(c.k32[dst:dst+hd], k[src:src+hd])
				copy(c.v32[dst:dst+hd], v[src:src+hd])
			case CacheF16:
				f32ToF16(c.k16[dst:dst+hd], k[src:src+hd])
				f32ToF16(c.v16[dst:dst+hd], v[src:src+hd])
			}
		}
	}
}

// Keys copies the keys (after RoPE) of positions [from, to) of one layer and key/value
// head into dst, HeadDim values per position, and returns dst[:(to-from)*HeadDim].
func (c *Cache) Keys(layer, head, from, to int, dst []float32) ([]float32, error) {
	return c.read(c.k32, c.k16, layer, head, from, to, dst)
}

// Values is Keys for the values.
func (c *Cache) Values(layer, head, from, to int, dst []float32) ([]float32, error) {
	return c.read(c.v32, c.v16, layer, head, from, to, dst)
}

func (c *Cache) read(s32 []float32, s16 []uint16, layer, head, from, to int, dst []float32) ([]float32, error) {
	cfg := &c.m.Config
	if layer < 0 || layer >= cfg.Layers || head < 0 || head >= cfg.KVHeads || from < 0 || from > to || to > c.n {
		return nil, fmt.Errorf("model: cache read of layer %d head %d positions [%d, %d) out of range (%d layers, %d heads, %d positions)",
			layer, head, from, to, cfg.Layers, cfg.KVHeads, c.n)
	}
	n := (to - from) * cfg.HeadDim
	if len(dst) < n {
		return nil, fmt.Errorf("model: cache read of %d values into %d", n, len(dst))
	}
	at := c.offset(layer, head, from)
	if s32 != nil {
		copy(dst[:n], s32[at:at+n])
	} else {
		f16ToF32(dst[:n], s16[at:at+n])
	}
	return dst[:n], nil
}

// f32ToF16 converts src to half floats in dst.
func f32ToF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = kernels.F32ToF16(v)
	}
}

// f16ToF32 converts half floats in src to dst.
func f16ToF32(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = kernels.F16ToF32(h)
	}
}
