package precompute

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"squeeze/calibrate"
	"squeeze/format"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/kvquant"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
)

// decodedRows returns rows r decoded (keys rotated to their positions).
func decodedRows(t *testing.T, r sparse.Rows, d int) []float32 {
	t.Helper()
	out := make([]float32, r.Len()*d)
	switch v := r.(type) {
	case *kvquant.Rows:
		v.Dequantize(out, 0, v.Len())
	case *kvquant.Joined:
		at := 0
		for _, p := range v.Parts {
			copy(out[at:], decodedRows(t, p, d))
			at += p.Len() * d
		}
	case *sparse.F16Rows:
		kernels.F16ToF32Slice(out, v.Data)
	default:
		t.Fatalf("rows of type %T", r)
	}
	return out
}

func TestRunQuantized(t *testing.T) {
	mp := syntheticModel(t)
	in := corpus(t)
	for _, tc := range []struct {
		kv        KVOptions
		maxError  float64
		wantQNorm bool
	}{
		{KVOptions{Encoding: "nuq3", Outliers: 0.01}, 0.25, false},
		{KVOptions{Encoding: "nf2", Outliers: 0.02}, 0.6, true},
		{KVOptions{Encoding: "int4", PostRoPE: true, QNorm: QNormOn}, 0.15, true},
		{KVOptions{Encoding: "nuq3", Outliers: 0.01, PerTokenKeys: true}, 0.25, false},
		{KVOptions{Encoding: "int4", PostRoPE: true, PerTokenKeys: true}, 0.15, false},
	} {
		name := tc.kv.Encoding
		if tc.kv.PerTokenKeys {
			name += "/per-token-keys"
		}
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "ctx.sqz")
			opts := runOptions(mp, out, in)
			opts.Squeeze.KV = tc.kv
			var stages []Stage
			opts.Squeeze.Progress = func(p Progress) {
				if len(stages) == 0 || stages[len(stages)-1] != p.Stage {
					stages = append(stages, p.Stage)
				}
			}
			if _, err := Run(context.Background(), opts); err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(stages, StageQuantize) {
				t.Errorf("stages %v lack %s", stages, StageQuantize)
			}
			a, err := format.ReadArtifact(out)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if a.Header.Settings.KV != tc.kv.Encoding || a.KV == nil || a.KV.QNorm != tc.wantQNorm || a.KV.PostRoPE != tc.kv.PostRoPE {
				t.Fatalf("kv %q %+v", a.Header.Settings.KV, a.KV)
			}
			for l, ly := range a.KV.Layers {
				if ly.KeyError <= 0 || ly.KeyError > tc.maxError || ly.ValueError <= 0 || ly.ValueError > tc.maxError {
					t.Errorf("layer %d: key error %v, value error %v (at most %v)", l, ly.KeyError, ly.ValueError, tc.maxError)
				}
			}
			// Decoded keys, rotated to their positions, are the model's keys up to the
			// quantization error; the sink is exact up to f16.
			f, err := gguf.Open(mp)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := model.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			S := len(a.Context.Tokens)
			c, _ := m.NewCache(S, model.CacheF32)
			pool := kernels.NewPool(1)
			defer pool.Close()
			if err := m.Forward(pool, c, a.Context.Tokens, nil, nil); err != nil {
				t.Fatal(err)
			}
			d := m.Config.HeadDim
			for l, heads := range a.Context.Layers {
				for h, hd := range heads {
					want, _ := c.Keys(l, h, 0, S, make([]float32, S*d))
					var e, n float64
					check := func(rows sparse.Rows, pos []int32) {
						got := decodedRows(t, rows, d)
						for i, p := range pos {
							for j := range d {
								w := float64(want[int(p)*d+j])
								diff := float64(got[i*d+j]) - w
								if p == 0 && math.Abs(diff) > 1e-2*(1+math.Abs(w)) {
									t.Fatalf("layer %d head %d: sink key %v, want %v", l, h, got[i*d+j], w)
								}
								e += diff * diff
								n += w * w
							}
						}
					}
					check(hd.Keys, hd.Tree.Order())
					check(hd.AlwaysK, hd.Always)
					if k := hd.Keys.(*kvquant.Rows); (k.Axis == kvquant.PerToken) != tc.kv.PerTokenKeys {
						t.Fatalf("layer %d head %d: keys quantized along %v", l, h, k.Axis)
					}
					if r := math.Sqrt(e / n); r > tc.maxError {
						t.Fatalf("layer %d head %d: keys' relative error %v", l, h, r)
					}
				}
			}
			// The runtime attends to it.
			if _, err := sparse.NewSession(a.Context, m, pool, 0.25); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// loadSynthetic opens and loads the synthetic model, with a pool of 2 threads; both are
// closed when the test ends.
func loadSynthetic(t *testing.T) (*gguf.File, *model.Model, *kernels.Pool) {
	t.Helper()
	f, err := gguf.Open(syntheticModel(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	m, err := model.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(2)
	t.Cleanup(pool.Close)
	return f, m, pool
}

// TestQuantizeAfterSqueeze: quantizing a squeezed f16 context afterwards (Quantize, as
// eval does) gives the rows that squeezing with the encoding gives, and leaves the f16
// context as it was.
func TestQuantizeAfterSqueeze(t *testing.T) {
	f, m, pool := loadSynthetic(t)
	tokens := make([]int32, 300)
	for i := range tokens {
		tokens[i] = int32((i*37 + 11) % m.Config.Vocab)
	}
	so := SqueezeOptions{Window: 16, Seed: 1, Batch: 64, KeepPreRoPE: true}
	sq, err := Squeeze(context.Background(), m, f, pool, tokens, so)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range []KVOptions{{Encoding: "nuq3", Outliers: 0.01}, {Encoding: "int2", PostRoPE: true, QNorm: QNormOff}, {Encoding: "nf3", Outliers: 0.01, PerTokenKeys: true}} {
		c, info, err := Quantize(context.Background(), sq, m, f, pool, kv)
		if err != nil {
			t.Fatal(err)
		}
		so2 := so
		so2.KeepPreRoPE, so2.KV = false, kv
		direct, err := Squeeze(context.Background(), m, f, pool, tokens, so2)
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Layers) != m.Config.Layers || info.Layers[0].KeyError != direct.KV.Layers[0].KeyError {
			t.Fatalf("%s: kv %+v, squeezing gave %+v", kv.Encoding, info.Layers[0], direct.KV.Layers[0])
		}
		d := m.Config.HeadDim
		for l := range c.Layers {
			for h := range c.Layers[l] {
				a, b := c.Layers[l][h], direct.Context.Layers[l][h]
				for i, p := range [][2]sparse.Rows{{a.Keys, b.Keys}, {a.Values, b.Values}, {a.AlwaysK, b.AlwaysK}, {a.AlwaysV, b.AlwaysV}} {
					if !slices.Equal(decodedRows(t, p[0], d), decodedRows(t, p[1], d)) {
						t.Fatalf("%s: layer %d head %d rows %d differ", kv.Encoding, l, h, i)
					}
				}
				if _, ok := sq.Context.Layers[l][h].Keys.(*sparse.F16Rows); !ok {
					t.Fatal("Quantize changed the squeezed context")
				}
			}
		}
	}
	// ExactWindow leaves the always-attended rows (sink and window) as they were.
	c, _, err := Quantize(context.Background(), sq, m, f, pool, KVOptions{Encoding: "nuq3", ExactWindow: true})
	if err != nil {
		t.Fatal(err)
	}
	for l := range c.Layers {
		for h := range c.Layers[l] {
			a, b := c.Layers[l][h], sq.Context.Layers[l][h]
			if a.AlwaysK != b.AlwaysK || a.AlwaysV != b.AlwaysV {
				t.Fatal("ExactWindow quantized the always-attended rows")
			}
			if _, ok := a.Keys.(*kvquant.Rows); !ok {
				t.Fatalf("keys of type %T", a.Keys)
			}
		}
	}
	if _, _, err := Quantize(context.Background(), sq, m, f, pool, KVOptions{Encoding: "f16"}); err == nil {
		t.Error("Quantize to f16 accepted")
	}
}

// TestQuantizeWeighting: nuq datatypes fitted with Fisher weights (on the context or on a
// calibration text) differ from unweighted ones, and the kv section names the fit.
func TestQuantizeWeighting(t *testing.T) {
	f, m, pool := loadSynthetic(t)
	tokens := make([]int32, 200)
	calib := make([]int32, 150)
	for i := range tokens {
		tokens[i] = int32((i*37 + 11) % m.Config.Vocab)
	}
	for i := range calib {
		calib[i] = int32((i*53 + 5) % m.Config.Vocab)
	}
	sq, err := Squeeze(context.Background(), m, f, pool, tokens, SqueezeOptions{Window: 16, Batch: 64, KeepPreRoPE: true})
	if err != nil {
		t.Fatal(err)
	}
	infos := map[string]*format.KVInfo{}
	for name, kv := range map[string]KVOptions{
		"fisher-scale":                    {Encoding: "nuq3"},
		"none":                            {Encoding: "nuq3", Weighting: calibrate.Unweighted},
		"fisher-scale (calibration text)": {Encoding: "nuq3", Calib: calib},
		"":                                {Encoding: "nf3"},
	} {
		_, info, err := Quantize(context.Background(), sq, m, f, pool, kv)
		if err != nil {
			t.Fatal(err)
		}
		if info.Calibration != name {
			t.Errorf("%s: calibration %q", kv.Encoding, info.Calibration)
		}
		infos[name] = info
	}
	a, b, c := infos["fisher-scale"].Layers[0].Key, infos["none"].Layers[0].Key, infos["fisher-scale (calibration text)"].Layers[0].Key
	if slices.Equal(a.Signposts, b.Signposts) || slices.Equal(a.Signposts, c.Signposts) {
		t.Errorf("weightings fit the same signposts: %v, %v, %v", a.Signposts, b.Signposts, c.Signposts)
	}
	if _, _, err := Quantize(context.Background(), sq, m, f, pool, KVOptions{Encoding: "nuq3", Weighting: 7}); err == nil {
		t.Error("weighting 7 accepted")
	}
}

func TestUsesQNorm(t *testing.T) {
	for _, tc := range []struct {
		kv   KVOptions
		want bool
	}{
		{KVOptions{Encoding: "nuq2"}, true},
		{KVOptions{Encoding: "int2"}, true},
		{KVOptions{Encoding: "nuq3"}, false},
		{KVOptions{Encoding: "nuq4"}, false},
		{KVOptions{Encoding: "nuq2", QNorm: QNormOff}, false},
		{KVOptions{Encoding: "nuq4", QNorm: QNormOn}, true},
		{KVOptions{Encoding: "f16", QNorm: QNormOn}, false},
		{KVOptions{}, false},
	} {
		if got := tc.kv.UsesQNorm(); got != tc.want {
			t.Errorf("%q with Q-Norm %v: UsesQNorm %v, want %v", tc.kv.Encoding, tc.kv.QNorm, got, tc.want)
		}
	}
	if err := (KVOptions{Encoding: "nuq2", QNorm: 9}).check(); !errors.Is(err, ErrInvalid) {
		t.Errorf("Q-Norm mode 9: %v, want ErrInvalid", err)
	}
}

// TestQuantizeRounding: RoundingDots's codes give the keys' dot products with the
// context's last-window queries, and the values' with the output projection's rows that
// read them, a smaller error than nearest rounding's; a squeezed context without
// queries cannot be quantized with it.
func TestQuantizeRounding(t *testing.T) {
	f, m, pool := loadSynthetic(t)
	tokens := make([]int32, 400)
	for i := range tokens {
		tokens[i] = int32((i*i*7 + i*37 + 11) % m.Config.Vocab)
	}
	sq, err := Squeeze(context.Background(), m, f, pool, tokens, SqueezeOptions{Window: 32, Seed: 1, Batch: 64, KeepPreRoPE: true})
	if err != nil {
		t.Fatal(err)
	}
	outputs, err := outputProjections(m, f)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &m.Config
	d := cfg.HeadDim
	// errs returns the squared errors of the keys' dot products with the window's
	// queries and of the values' with the output projection's rows, over every head.
	errs := func(c *sparse.Context) (keys, vals float64) {
		for l := range c.Layers {
			for h := range c.Layers[l] {
				q := sq.Queries[l*cfg.KVHeads+h]
				wo := headOutputs(outputs[l], cfg, h)
				exact, got := sq.Context.Layers[l][h], c.Layers[l][h]
				for _, part := range []struct {
					want, got sparse.Rows
					by        []float32
					sum       *float64
				}{{exact.Keys, got.Keys, q, &keys}, {exact.Values, got.Values, wo, &vals}} {
					w, g := decodedRows(t, part.want, d), decodedRows(t, part.got, d)
					for i := 0; i < len(w); i += d {
						for k := 0; k < len(part.by); k += d {
							var s float64
							for j := range d {
								s += float64(part.by[k+j]) * float64(g[i+j]-w[i+j])
							}
							*part.sum += s * s
						}
					}
				}
			}
		}
		return keys, vals
	}
	for _, enc := range []string{"nuq3", "int2", "nf4"} {
		dots, _, err := Quantize(context.Background(), sq, m, f, pool, KVOptions{Encoding: enc, Outliers: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		nearest, _, err := Quantize(context.Background(), sq, m, f, pool, KVOptions{Encoding: enc, Outliers: 0.01, Rounding: RoundingNearest})
		if err != nil {
			t.Fatal(err)
		}
		dk, dv := errs(dots)
		nk, nv := errs(nearest)
		t.Logf("%s: keys' dot products %.4g against %.4g to nearest, values' %.4g against %.4g", enc, dk, nk, dv, nv)
		if !(dk < 0.9*nk) || !(dv < 0.95*nv) {
			t.Errorf("%s: keys' squared dot-product error %v against %v to nearest, values' %v against %v", enc, dk, nk, dv, nv)
		}
	}
	// Post-RoPE keys need no pre-RoPE keys kept, but dots rounding still has queries.
	plain, err := Squeeze(context.Background(), m, f, pool, tokens, SqueezeOptions{Window: 32, Seed: 1, Batch: 64})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Quantize(context.Background(), plain, m, f, pool, KVOptions{Encoding: "nuq3", PostRoPE: true}); err != nil {
		t.Errorf("post-RoPE keys after a squeeze that kept no pre-RoPE keys: %v", err)
	}
	bare := *sq
	bare.Queries = nil
	if _, _, err := Quantize(context.Background(), &bare, m, f, pool, KVOptions{Encoding: "nuq3"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("no queries: error %v, want ErrInvalid", err)
	}
	if _, _, err := Quantize(context.Background(), &bare, m, f, pool, KVOptions{Encoding: "nuq3", Rounding: RoundingNearest}); err != nil {
		t.Errorf("no queries, nearest rounding: %v", err)
	}
	if _, _, err := Quantize(context.Background(), sq, m, f, pool, KVOptions{Encoding: "nuq3", Rounding: 5}); !errors.Is(err, ErrInvalid) {
		t.Errorf("rounding 5: error %v, want ErrInvalid", err)
	}
}
