package kernels

import (
	"math"
	"unsafe"
)

// Tiled causal attention for batches of query vectors ("flash attention" on the CPU).
//
// A key/value head's keys and values are first packed (AttnKV.Pack) into the panel
// layout of the GEMM micro-kernels: keys transposed in panels of attnPanel positions,
// values in panels of attnPanel dimensions. Attend then walks a block of query rows
// against tiles of attnTileKeys positions:
//
//	S = Q Kᵀ            (micro-kernel: query rows x key panels, k = HeadDim)
//	online softmax      (per row: running max m and sum l; P = 2^(S - m))
//	O = α O + P V       (micro-kernel: query rows x value panels, k = tile positions)
//
// so every key and value is read once per block of rows, the scores never leave a
// tile-sized buffer, and both products run at the micro-kernel's arithmetic rate. The
// queries are scaled by log2(e) first, so the scores are in base 2 and the softmax
// needs 2^x (cheaper than exp, see attn_gen.go). The result equals the plain
// softmax(Q Kᵀ) V up to float rounding.

// attnPanel is the panel width of the packed keys and values: the micro-kernels' panel.
const attnPanel = gemmPanel

// attnTileKeys is the number of positions per tile (a multiple of attnPanel). From
// BenchmarkAttend on one AMD Zen 4 thread at depth 32K: 78, 83 and 88 GFLOP/s with tiles
// of 128, 256 and 512 (fewer online-softmax rescales and calls per row).
var attnTileKeys = 512

// attnExp2 is the softmax step (attnExp2For), attnExp2W its width; nil for the
// reference.
// attnMax, if not nil, is rowMax's kernel (attnMaxFor), attnMaxW its width.
var (
	attnExp2  func(x *float32, n int, m float32) float32
	attnExp2W int
	attnMax   func(x *float32, n int) float32
	attnMaxW  int
)

func init() {
	addReinit(func() {
		attnExp2, attnExp2W = attnExp2For()
		attnMax, attnMaxW = attnMaxFor()
	})
}

// attnGemm is the micro-kernel Attend uses: the GEMM's where cpuHas allows one, else
// gemmGo.
func attnGemm() *gemmKernel {
	if gk != nil {
		return gk
	}
	return &gemmGoKernel
}

// gemmGoKernel is the pure-Go micro-kernel: 4 rows by a whole panel.
var gemmGoKernel = gemmKernel{mr: 4, nr: attnPanel, fn: gemmGo}

// gemmGo is the reference micro-kernel: for t < 4 and j < attnPanel,
// c[t*ldc+j] = sum_{p<k} x[t*ldx+p] * a[p*attnPanel+j].
func gemmGo(k int, a *float32, x *float32, ldx int, c *float32, ldc int) {
	as := unsafe.Slice(a, k*attnPanel)
	xs := unsafe.Slice(x, 3*ldx+k)
	cs := unsafe.Slice(c, 3*ldc+attnPanel)
	for t := range 4 {
		var acc [attnPanel]float32
		xr := xs[t*ldx : t*ldx+k]
		for p, xv := range xr {
			ar := as[p*attnPanel : (p+1)*attnPanel]
			for j := range acc {
				acc[j] += xv * ar[j]
			}
		}
		copy(cs[t*ldc:t*ldc+attnPanel], acc[:])
	}
}

// KVHead is one key/value head's cache memory, in f32 or f16 (set exactly one pair).
// Position i's key is Keys[i*headDim:(i+1)*headDim]; its value's dimension d is
// Values[d*Stride+i] (values are stored dimension-major).
type KVHead struct {
	Keys32, Values32 []float32
	Keys16, Values16 []uint16
	Stride           int
}

// AttnKV is one key/value head's keys and values packed for Attend. The zero value is
// ready for Reset.
type AttnKV struct {
	headDim int
	n, np   int       // positions, and rounded up to whole panels
	hdp     int       // headDim rounded up to whole panels
	keysT   []float32 // element d of position b*attnPanel+j at (b*headDim+d)*attnPanel+j
	values  []float32 // dimension c*attnPanel+j of position i at (c*np+i)*attnPanel+j
}

// Reset sizes kv for n positions of headDim dimensions (keeping its memory where it is
// large enough); Pack then fills it panel by panel.
func (kv *AttnKV) Reset(headDim, n int) {
	kv.headDim, kv.n = headDim, n
	kv.np = (n + attnPanel - 1) / attnPanel * attnPanel
	kv.hdp = (headDim + attnPanel - 1) / attnPanel * attnPanel
	kv.keysT = growF32(kv.keysT, kv.np*headDim)
	kv.values = growF32(kv.values, kv.hdp*kv.np)
}

// Panels returns the number of key panels Pack fills (positions / attnPanel, rounded up).
func (kv *AttnKV) Panels() int { return kv.np / attnPanel }

// Pack copies positions [b0*attnPanel, b1*attnPanel) of src (clipped to the positions
// Reset gave) into their panels, converting f16 to f32; the rest of the last panel is
// zero. Disjoint panel ranges may be packed concurrently.
func (kv *AttnKV) Pack(src *KVHead, b0, b1 int) {
	hd := kv.headDim
	var buf [attnPanel]float32
	for b := b0; b < b1; b++ {
		p0 := b * attnPanel
		cnt := min(attnPanel, kv.n-p0)
		// Keys: position p0+j's vector becomes column j of panel b.
		panel := kv.keysT[b*hd*attnPanel : (b+1)*hd*attnPanel]
		if cnt < attnPanel {
			clear(panel)
		}
		for j := range cnt {
			at := (p0 + j) * hd
			for d0 := 0; d0 < hd; d0 += attnPanel {
				w := min(attnPanel, hd-d0)
				row := buf[:w]
				if src.Keys32 != nil {
					row = src.Keys32[at+d0 : at+d0+w]
				} else {
					F16ToF32Slice(row, src.Keys16[at+d0:at+d0+w])
				}
				for d, v := range row {
					panel[(d0+d)*attnPanel+j] = v
				}
			}
		}
		// Values: dimension d's row segment becomes column d%attnPanel of positions
		// p0.. in value panel d/attnPanel.
		for d := range kv.hdp {
			c, col := d/attnPanel, d%attnPanel
			dst := kv.values[(c*kv.np+p0)*attnPanel:]
			if d >= hd {
				for j := range attnPanel {
					dst[j*attnPanel+col] = 0
				}
				continue
			}
			row := buf[:cnt]
			at := d*src.Stride + p0
			if src.Values32 != nil {
				row = src.Values32[at : at+cnt]
			} else {
				F16ToF32Slice(row, src.Values16[at:at+cnt])
			}
			for j, v := range row {
				dst[j*attnPanel+col] = v
			}
			for j := cnt; j < attnPanel; j++ {
				dst[j*attnPanel+col] = 0
			}
		}
	}
}

// AttnScratch is one thread's working memory for Attend, grown on demand. The zero
// value is ready to use.
type AttnScratch struct {
	q, s, tmp, o []float32
	m, l, alpha  []float32
}

// Attend computes causal softmax attention for rows query vectors q (rows x headDim,
// row-major, already scaled) over kv: row r attends to positions [0, first+r/per) (pass
// per = the query rows of one token, so that they share a limit), which must not exceed
// the packed positions. out receives rows x headDim outputs; lse, if not nil, each
// row's log-sum-exp of its scores (-Inf, and a zero output, for a row that sees no
// position).
func (s *AttnScratch) Attend(kv *AttnKV, q []float32, rows, per, first int, out, lse []float32) {
	if rows <= 0 {
		return
	}
	g := attnGemm()
	hd, hdp, np := kv.headDim, kv.hdp, kv.np
	tile := attnTileKeys
	rp := (rows + g.mr - 1) / g.mr * g.mr
	limit := func(r int) int { return min(kv.n, max(0, first+r/per)) }

	s.q = growF32(s.q, rp*hd)
	copy(s.q, q[:rows*hd])
	clear(s.q[rows*hd:])
	Scale(s.q[:rows*hd], math.Log2E)
	s.s = growF32(s.s, rp*tile)
	s.tmp = growF32(s.tmp, rp*hdp)
	s.o = growF32(s.o, rp*hdp)
	s.m, s.l, s.alpha = growF32(s.m, rp), growF32(s.l, rp), growF32(s.alpha, rp)
	clear(s.o)
	clear(s.l)
	for r := range s.m {
		s.m[r] = float32(math.Inf(-1))
	}

	span := limit(rows - 1)
	for k0 := 0; k0 < span; k0 += tile {
		kt := min(tile, span-k0)
		panels := (kt + attnPanel - 1) / attnPanel
		// The first row that sees a position of this tile, down to a micro-kernel row.
		r0 := 0
		if k0 >= first {
			r0 = min(rows, (k0-first+1)*per)
		}
		r0 = r0 / g.mr * g.mr
		for rg := r0; rg < rp; rg += g.mr {
			for jp := range panels {
				a := kv.keysT[(k0/attnPanel+jp)*hd*attnPanel:]
				for h := 0; h < attnPanel; h += g.nr {
					g.fn(hd, &a[h], &s.q[rg*hd], hd, &s.s[rg*tile+jp*attnPanel+h], tile)
				}
			}
		}
		for r := r0; r < rp; r++ {
			row := s.s[r*tile : r*tile+kt]
			keep := 0
			if r < rows {
				keep = min(kt, limit(r)-k0)
			}
			if keep <= 0 {
				clear(row)
				s.alpha[r] = 1
				continue
			}
			mOld := s.m[r]
			mNew := max(mOld, rowMax(row[:keep]))
			sum := exp2ShiftSum(row[:keep], mNew)
			clear(row[keep:])
			a := float32(1) // the usual case once a row has seen its largest scores
			if mNew != mOld {
				a = float32(math.Exp2(float64(mOld - mNew))) // 0 for the row's first tile
			}
			s.alpha[r], s.m[r], s.l[r] = a, mNew, s.l[r]*a+sum
		}
		for rg := r0; rg < rp; rg += g.mr {
			for c := 0; c < hdp; c += attnPanel {
				a := kv.values[(c/attnPanel*np+k0)*attnPanel:]
				for h := 0; h < attnPanel; h += g.nr {
					g.fn(kt, &a[h], &s.s[rg*tile], tile, &s.tmp[rg*hdp+c+h], hdp)
				}
			}
		}
		for r := r0; r < rows; r++ {
			o, t := s.o[r*hdp:(r+1)*hdp], s.tmp[r*hdp:(r+1)*hdp]
			switch a := s.alpha[r]; a {
			case 0:
				copy(o, t)
			case 1:
				Add(o, t)
			default:
				Scale(o, a)
				Add(o, t)
			}
		}
	}
	for r := range rows {
		dst := out[r*hd : (r+1)*hd]
		if s.l[r] == 0 {
			clear(dst)
			if lse != nil {
				lse[r] = float32(math.Inf(-1))
			}
			continue
		}
		copy(dst, s.o[r*hdp:r*hdp+hd])
		Scale(dst, 1/s.l[r])
		if lse != nil {
			lse[r] = float32((float64(s.m[r]) + math.Log2(float64(s.l[r]))) * math.Ln2)
		}
	}
}

// rowMax returns the largest element of a non-empty x.
func rowMax(x []float32) float32 {
	k := opsK
	nv := 0
	m := x[0]
	switch {
	case attnMax != nil && len(x) >= attnMaxW:
		nv = len(x) &^ (attnMaxW - 1)
		m = attnMax(unsafe.SliceData(x), nv)
	case k != nil && len(x) >= 8:
		nv = len(x) &^ 7
		m = k.max(unsafe.SliceData(x), nv)
	}
	for _, v := range x[nv:] {
		m = max(m, v)
	}
	return m
}

// exp2ShiftSum sets x[i] = 2^(x[i] - m) (x[i] <= m) and returns their sum.
func exp2ShiftSum(x []float32, m float32) float32 {
	nv := 0
	var sum float32
	if attnExp2 != nil {
		nv = len(x) &^ (attnExp2W - 1)
		if nv > 0 {
			sum = attnExp2(unsafe.SliceData(x), nv, m)
		}
	}
	for i := nv; i < len(x); i++ {
		e := float32(math.Exp2(float64(x[i] - m)))
		x[i] = e
		sum += e
	}
	return sum
}
