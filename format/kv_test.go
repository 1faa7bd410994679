package format

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"

	"squeeze/runtime/kernels"
	"squeeze/runtime/kvquant"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
)

// quantizedTestArtifact is testArtifact with its rows quantized as precompute stores
// them: keys before RoPE along keyAxis (per channel by default; rotated when read),
// values per token, the sink in f16 and the window quantized; postRoPE stores keys as
// they are.
func quantizedTestArtifact(t testing.TB, layers, kvHeads, dim, n int, seed uint64, enc string, postRoPE bool, keyAxis kvquant.Axis) *Artifact {
	t.Helper()
	a := testArtifact(t, layers, kvHeads, dim, n, seed)
	m := &a.Header.Model
	_, bits, err := ParseKVEncoding(enc)
	if err != nil {
		t.Fatal(err)
	}
	dt, err := kvquant.NormalFloat(bits)
	if err != nil {
		t.Fatal(err)
	}
	kv := &KVInfo{Outliers: 0.05, PostRoPE: postRoPE, Calibration: "test"}
	var rope *kvquant.RoPE
	if !postRoPE {
		cfg := model.Config{HeadDim: dim, RopeDim: m.RopeDim, RopeBase: m.RopeBase, RopeScale: m.RopeScale}
		if kv.Frequencies, err = kvquant.Frequencies(&cfg, nil); err != nil {
			t.Fatal(err)
		}
		if rope, err = kvquant.NewRoPE(dim, m.NeoX, kv.Frequencies, n); err != nil {
			t.Fatal(err)
		}
	}
	f32 := func(r sparse.Rows) []float32 {
		v := r.(*sparse.F16Rows)
		out := make([]float32, len(v.Data))
		kernels.F16ToF32Slice(out, v.Data)
		return out
	}
	quant := func(x []float32, axis kvquant.Axis, pos []int32) *kvquant.Rows {
		p := kvquant.Params{Type: dt, Axis: axis, Outliers: kv.Outliers}
		if pos != nil && rope != nil {
			p.Pos, p.RoPE = pos, rope
		}
		r, err := kvquant.Quantize(x, dim, p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for l := range a.Context.Layers {
		kv.Layers = append(kv.Layers, KVLayer{Key: dt, Value: dt, KeyError: 0.01, ValueError: 0.02})
		for h := range a.Context.Layers[l] {
			hd := &a.Context.Layers[l][h]
			order := hd.Tree.Order()
			ak, av := f32(hd.AlwaysK), f32(hd.AlwaysV)
			sinkK := &sparse.F16Rows{Dim: dim, Data: hd.AlwaysK.(*sparse.F16Rows).Data[:dim]}
			sinkV := &sparse.F16Rows{Dim: dim, Data: hd.AlwaysV.(*sparse.F16Rows).Data[:dim]}
			hd.Keys = quant(f32(hd.Keys), keyAxis, order)
			hd.Values = quant(f32(hd.Values), kvquant.PerToken, nil)
			wk := quant(ak[dim:], keyAxis, hd.Always[1:])
			wv := quant(av[dim:], kvquant.PerToken, nil)
			if hd.AlwaysK, err = kvquant.Join(sinkK, wk); err != nil {
				t.Fatal(err)
			}
			if hd.AlwaysV, err = kvquant.Join(sinkV, wv); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.Header.Settings.KV = enc
	a.KV = kv
	return a
}

// decoded returns rows r decoded to float32.
func decoded(r sparse.Rows, dim int) []float32 {
	out := make([]float32, r.Len()*dim)
	switch v := r.(type) {
	case *sparse.F16Rows:
		kernels.F16ToF32Slice(out, v.Data)
	case *kvquant.Rows:
		v.Dequantize(out, 0, v.Len())
	case *kvquant.Joined:
		at := 0
		for _, p := range v.Parts {
			copy(out[at:], decoded(p, dim))
			at += p.Len() * dim
		}
	}
	return out
}

func TestQuantizedArtifactRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		layers, kv, dim, toks int
		enc                   string
		post                  bool
		keyAxis               kvquant.Axis
	}{
		{"nuq3", 2, 2, 16, 60, "nuq3", false, kvquant.PerChannel},
		{"int2 post-rope", 1, 1, 8, 30, "int2", true, kvquant.PerChannel},
		{"nf4 odd dim", 2, 3, 6, 25, "nf4", false, kvquant.PerChannel},
		{"nuq3 per-token keys", 2, 2, 16, 60, "nuq3", false, kvquant.PerToken},
		{"int3 per-token keys post-rope", 1, 2, 8, 30, "int3", true, kvquant.PerToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := quantizedTestArtifact(t, tc.layers, tc.kv, tc.dim, tc.toks, 3, tc.enc, tc.post, tc.keyAxis)
			path, data := writeTestArtifact(t, a)
			b, err := ReadArtifact(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.Header.Settings.KV != tc.enc || b.KV == nil || b.KV.PostRoPE != tc.post || len(b.KV.Layers) != tc.layers {
				t.Fatalf("kv %q %+v", b.Header.Settings.KV, b.KV)
			}
			if !slices.Equal(b.KV.Frequencies, a.KV.Frequencies) || b.KV.Layers[0].KeyError != 0.01 {
				t.Fatalf("kv section %+v, want %+v", b.KV, a.KV)
			}
			for l := range a.Context.Layers {
				for h := range a.Context.Layers[l] {
					x, y := &a.Context.Layers[l][h], &b.Context.Layers[l][h]
					for i, p := range [][2]sparse.Rows{{x.Keys, y.Keys}, {x.Values, y.Values}, {x.AlwaysK, y.AlwaysK}, {x.AlwaysV, y.AlwaysV}} {
						if _, ok := p[1].(*sparse.F16Rows); ok {
							t.Fatalf("layer %d head %d rows %d read as f16", l, h, i)
						}
						if !slices.Equal(decoded(p[0], tc.dim), decoded(p[1], tc.dim)) {
							t.Fatalf("layer %d head %d rows %d decode differently", l, h, i)
						}
					}
					if k := y.Keys.(*kvquant.Rows); k.Axis != tc.keyAxis || (k.RoPE == nil) != tc.post {
						t.Fatalf("layer %d head %d: keys along %v, RoPE %v", l, h, k.Axis, k.RoPE != nil)
					}
					// The codes are views of the mapping, on a cache line.
					for _, r := range []sparse.Rows{y.Keys, y.Values} {
						if c := r.(*kvquant.Rows).Codes; uintptr(unsafe.Pointer(&c[0]))%Alignment != 0 {
							t.Fatalf("layer %d head %d: codes at %p, not on a line", l, h, &c[0])
						}
					}
				}
			}
			if _, err := ParseArtifact(data); err != nil {
				t.Fatal(err)
			}
			_, again := writeTestArtifact(t, a)
			if !slices.Equal(data, again) {
				t.Fatal("two writes differ")
			}
		})
	}
}

func TestQuantizedArtifactRefused(t *testing.T) {
	a := quantizedTestArtifact(t, 1, 1, 8, 20, 4, "nuq3", false, kvquant.PerChannel)
	path := filepath.Join(t.TempDir(), "a.sqz")
	noKV := *a
	noKV.KV = nil
	if err := WriteArtifact(path, &noKV); err == nil {
		t.Error("a quantized artifact without its kv section was written")
	}
	bad := *a
	bad.Header.Settings.KV = "nuq5"
	if err := WriteArtifact(path, &bad); err == nil {
		t.Error("KV encoding nuq5 was written")
	}
	// Keys whose positions are not their rows' are refused.
	shifted := quantizedTestArtifact(t, 1, 1, 8, 20, 4, "nuq3", false, kvquant.PerChannel)
	k := shifted.Context.Layers[0][0].Keys.(*kvquant.Rows)
	k.Pos = slices.Clone(k.Pos)
	k.Pos[0], k.Pos[1] = k.Pos[1], k.Pos[0]
	if err := WriteArtifact(path, shifted); err == nil {
		t.Error("keys at the wrong positions were written")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused write left %s", path)
	}
}

func TestParseKVEncoding(t *testing.T) {
	for _, tc := range []struct {
		s      string
		family string
		bits   int
	}{{"f16", "f16", 16}, {"nuq3", "nuq", 3}, {"nf2", "nf", 2}, {"int4", "int", 4}} {
		f, b, err := ParseKVEncoding(tc.s)
		if err != nil || f != tc.family || b != tc.bits {
			t.Errorf("ParseKVEncoding(%q) = %q, %d, %v", tc.s, f, b, err)
		}
	}
	for _, s := range []string{"", "nuq", "nuq1", "nuq5", "nuq03", "int+3", "q4", "f32"} {
		if _, _, err := ParseKVEncoding(s); err == nil {
			t.Errorf("ParseKVEncoding(%q) accepted", s)
		}
	}
}

// FuzzQuantizedLayer feeds the kv and layer payload decoders of a quantized artifact.
func FuzzQuantizedLayer(f *testing.F) {
	a := quantizedTestArtifact(f, 1, 2, 8, 24, 5, "nuq3", false, kvquant.PerChannel)
	h := a.Header
	var e Encoder
	encodeKV(&e, a.KV)
	kvb := e.Bytes()
	le := NewEncoder(nil)
	if err := encodeLayer(le, &h, a.Context.Layers[0]); err != nil {
		f.Fatal(err)
	}
	f.Add(kvb, le.Bytes())
	f.Add(kvb[:len(kvb)-2], le.Bytes()[:len(le.Bytes())/2])
	f.Fuzz(func(t *testing.T, kvb, layer []byte) {
		kv, err := decodeKV(NewDecoder(SectionKV, kvb), &h)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("kv: %v wraps no sentinel", err)
			}
			return
		}
		rope, err := newRoPE(&h, kv)
		if err != nil {
			return
		}
		heads, err := decodeLayerKV(NewDecoder("layer.0", layer), &h, make([]bool, h.Tokens), rope)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("layer: %v wraps no sentinel", err)
			}
			return
		}
		q := make([]float32, 8)
		for _, hd := range heads {
			for _, r := range []sparse.Rows{hd.Keys, hd.Values, hd.AlwaysK, hd.AlwaysV} {
				dst := make([]float32, r.Len())
				r.Dots(dst, q, 0, r.Len())
				r.Accumulate(q, dst, 0, r.Len())
			}
		}
	})
}

// TestQuantizedRowsForms round-trips quantized values through encodeRows and decodeRows:
// ranges on the grid (2 bytes a row) or off it (half floats), no outliers, many, and
// gaps between outliers longer than a byte.
func TestQuantizedRowsForms(t *testing.T) {
	const dim = 16
	rng := rand.New(rand.NewPCG(9, 9))
	x := make([]float32, 300*dim)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	nf3, err := kvquant.NormalFloat(3)
	if err != nil {
		t.Fatal(err)
	}
	quant := func(frac float64) *kvquant.Rows {
		r, err := kvquant.Quantize(x, dim, kvquant.Params{Type: nf3, Axis: kvquant.PerToken, Outliers: frac})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	offGrid := quant(0.01)
	offGrid.Token = slices.Clone(offGrid.Token)
	offGrid.Token[1] = kernels.F32ToF16(kernels.F16ToF32(offGrid.Token[1]) * 1.001)
	if _, _, ok := kvquant.EncodeTokenRanges(offGrid.Token); ok || offGrid.Init() != nil {
		t.Fatal("a range off the grid")
	}
	// Outliers only in the first and last rows, by ranges (on the grid: powers of two
	// about 0) that leave those rows' ends out.
	ranges := make([]kvquant.Range, 300)
	for i := range ranges {
		ranges[i] = kvquant.Range{Half: 8}
	}
	ranges[0].Half, ranges[299].Half = 0.25, 0.25
	sparseOut, err := kvquant.Quantize(x, dim, kvquant.Params{Type: nf3, Axis: kvquant.PerToken, Ranges: ranges})
	if err != nil {
		t.Fatal(err)
	}
	if o := sparseOut.Outliers(); o < 4 || int(sparseOut.OutIndex[o-1])-int(sparseOut.OutIndex[0]) < 255 {
		t.Fatalf("%d outliers", o)
	}
	for _, tc := range []struct {
		name string
		r    *kvquant.Rows
		form uint8
	}{
		{"grid", quant(0.01), rangesGrid},
		{"half floats", offGrid, rangesHalf},
		{"no outliers", quant(0), rangesGrid},
		{"many outliers", quant(0.4), rangesGrid},
		{"long gaps", sparseOut, rangesGrid},
	} {
		for _, line := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/line=%v", tc.name, line), func(t *testing.T) {
				var e Encoder
				if err := encodeRows(&e, tc.r, dim, tc.r.Len(), nil, line); err != nil {
					t.Fatal(err)
				}
				b := e.Bytes()
				// Tag, bits, axis, rotated, levels (count, padding to 4, 8 floats), then the form.
				if at := 4 + 4 + 32; b[at] != tc.form {
					t.Fatalf("ranges stored in form %d, want %d", b[at], tc.form)
				}
				bad := func(format string, args ...any) error { return fmt.Errorf(format, args...) }
				d := NewDecoder("rows", b)
				got, err := decodeRows(d, dim, tc.r.Len(), nil, nil, line, false, bad)
				if err != nil {
					t.Fatal(err)
				}
				// Schema 3's codes start on a line of the payload (of the file, once mapped).
				if at := uintptr(unsafe.Pointer(&got.(*kvquant.Rows).Codes[0])) - uintptr(unsafe.Pointer(&b[0])); line && at%Alignment != 0 {
					t.Errorf("codes at payload offset %d, not on a line", at)
				}
				if d.Finish() != nil || !slices.Equal(decoded(got, dim), decoded(tc.r, dim)) {
					t.Fatal("rows decode differently")
				}
				g := got.(*kvquant.Rows)
				if !slices.Equal(g.Token, tc.r.Token) || !slices.Equal(g.OutStart, tc.r.OutStart) || !slices.Equal(g.OutIndex, tc.r.OutIndex) || !slices.Equal(g.OutValue, tc.r.OutValue) {
					t.Fatal("stored fields differ")
				}
				if len(b) > tc.r.Bytes()+64+32 { // arrays' counts and alignment
					t.Errorf("%d bytes stored, Bytes says %d", len(b), tc.r.Bytes())
				}
				// An axis this package does not know is refused.
				b = slices.Clone(b)
				b[2] = 2
				if _, err := decodeRows(NewDecoder("rows", b), dim, tc.r.Len(), nil, nil, line, false, bad); err == nil {
					t.Fatal("rows along axis 2 decoded")
				}
			})
		}
	}
}
