package model

import (
	"errors"
	"fmt"
	"unsafe"

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
// Layout: each layer and key/value head has a region of Cap() x HeadDim elements. Keys
// are stored position-major (one HeadDim vector per position), values dimension-major
// (one Cap()-long row per dimension), so that both attention products are matrix
// products over a span of positions: scores = K q and output = V^T p.
type Cache struct {
	m    *Model
	kind CacheType
	cap  int // positions
	n    int // positions filled

	k32, v32 []float32 // CacheF32
	k16, v16 []uint16  // CacheF16
	kb, vb   []byte    // the same memory as bytes, for kernels.Matrix
	elem     int       // bytes per element

	ws   workspace
	rows rowAttention // attentionRows' scratch
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
		// The values get one spare row: a span of V^T columns starting at position lo
		// is addressed as HeadDim full rows from lo, the last reaching lo positions past
		// the head's region.
		c.k32, c.v32 = make([]float32, size), make([]float32, size+maxTokens)
		c.kb, c.vb = asBytes(c.k32), asBytes(c.v32)
		c.elem = 4
	case CacheF16:
		c.k16, c.v16 = make([]uint16, size), make([]uint16, size+maxTokens)
		c.kb, c.vb = asBytes(c.k16), asBytes(c.v16)
		c.elem = 2
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

// DropFront removes the first n positions, moving the others to the front: position
// i+n becomes position i, and Len() shrinks by n. It is for a caller that moves the
// oldest tokens elsewhere (a Prefix that attends to them, whose Len() grows by n, so that
// every remaining token keeps its absolute position Prefix.Len()+cache position and the
// keys cached after RoPE stay valid). n must be in [0, Len()].
func (c *Cache) DropFront(n int) error {
	if n < 0 || n > c.n {
		return fmt.Errorf("model: drop %d positions from the front of a cache of %d", n, c.n)
	}
	if n == 0 {
		return nil
	}
	cfg := &c.m.Config
	hd, rest := cfg.HeadDim, c.n-n
	for l := range cfg.Layers {
		for h := range cfg.KVHeads {
			base := c.offset(l, h, 0)
			if c.kind == CacheF32 {
				copy(c.k32[base:base+rest*hd], c.k32[base+n*hd:base+c.n*hd])
			} else {
				copy(c.k16[base:base+rest*hd], c.k16[base+n*hd:base+c.n*hd])
			}
			for d := range hd {
				row := base + d*c.cap
				if c.kind == CacheF32 {
					copy(c.v32[row:row+rest], c.v32[row+n:row+c.n])
				} else {
					copy(c.v16[row:row+rest], c.v16[row+n:row+c.n])
				}
			}
		}
	}
	c.n = rest
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
	var half []uint16
	if c.kind == CacheF16 {
		// All values narrowed in one call, then scattered: a column of a few tokens is
		// too short for a call per dimension.
		half = c.ws.half[:n*kvDim]
		kernels.F32ToF16Slice(half, v[:n*kvDim])
	}
	for h := range cfg.KVHeads {
		base := c.offset(layer, h, 0)
		for i := range n {
			src := k[i*kvDim+h*hd : i*kvDim+(h+1)*hd]
			dst := base + (pos+i)*hd
			if c.kind == CacheF32 {
				copy(c.k32[dst:dst+hd], src)
			} else {
				kernels.F32ToF16Slice(c.k16[dst:dst+hd], src)
			}
		}
		// Values go to column pos+i of the head's HeadDim rows.
		for d := range hd {
			row := base + d*c.cap + pos
			if c.kind == CacheF32 {
				col := c.v32[row : row+n]
				for i := range col {
					col[i] = v[i*kvDim+h*hd+d]
				}
				continue
			}
			col := c.v16[row : row+n]
			for i := range col {
				col[i] = half[i*kvDim+h*hd+d]
			}
		}
	}
}

// Keys copies the keys (after RoPE) of positions [from, to) of one layer and key/value
// head into dst, HeadDim values per position, and returns dst[:(to-from)*HeadDim].
func (c *Cache) Keys(layer, head, from, to int, dst []float32) ([]float32, error) {
	dst, err := c.checkRead(layer, head, from, to, dst)
	if err != nil {
		return nil, err
	}
	at := c.offset(layer, head, from)
	if c.kind == CacheF32 {
		copy(dst, c.k32[at:at+len(dst)])
	} else {
		kernels.F16ToF32Slice(dst, c.k16[at:at+len(dst)])
	}
	return dst, nil
}

// Values is Keys for the values: HeadDim values per position, position-major.
func (c *Cache) Values(layer, head, from, to int, dst []float32) ([]float32, error) {
	dst, err := c.checkRead(layer, head, from, to, dst)
	if err != nil {
		return nil, err
	}
	hd := c.m.Config.HeadDim
	base := c.offset(layer, head, 0)
	for i := range to - from {
		for d := range hd {
			at := base + d*c.cap + from + i
			if c.kind == CacheF32 {
				dst[i*hd+d] = c.v32[at]
			} else {
				dst[i*hd+d] = kernels.F16ToF32(c.v16[at])
			}
		}
	}
	return dst, nil
}

func (c *Cache) checkRead(layer, head, from, to int, dst []float32) ([]float32, error) {
	cfg := &c.m.Config
	if layer < 0 || layer >= cfg.Layers || head < 0 || head >= cfg.KVHeads || from < 0 || from > to || to > c.n {
		return nil, fmt.Errorf("model: cache read of layer %d head %d positions [%d, %d) out of range (%d layers, %d heads, %d positions)",
			layer, head, from, to, cfg.Layers, cfg.KVHeads, c.n)
	}
	n := (to - from) * cfg.HeadDim
	if len(dst) < n {
		return nil, fmt.Errorf("model: cache read of %d values into %d", n, len(dst))
	}
	return dst[:n], nil
}

// asBytes returns the memory of s as bytes.
func asBytes[T float32 | uint16](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(s[0])))
}
