package format

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"squeeze/runtime/kvquant"
	"strings"
	"testing"
	"unsafe"

	"squeeze/runtime/gguf"
	"squeeze/runtime/index"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/sparse"
	"squeeze/runtime/tokenizer"
)

// testArtifact builds a small consistent artifact: layers x kvHeads heads of dimension dim
// over n tokens, the first token and the last two always attended, the others in a
// two-level tree.
func testArtifact(t testing.TB, layers, kvHeads, dim, n int, seed uint64) *Artifact {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	f16s := func(rows int) *sparse.F16Rows {
		r := &sparse.F16Rows{Dim: dim, Data: make([]uint16, rows*dim)}
		for i := range r.Data {
			r.Data[i] = uint16(rng.IntN(0x7800)) // finite halves
		}
		return r
	}
	sink, window := 1, 2
	c := &sparse.Context{Tokens: make([]int32, n)}
	for i := range c.Tokens {
		c.Tokens[i] = int32(rng.IntN(100))
	}
	always := []int32{0}
	for p := n - window; p < n; p++ {
		always = append(always, int32(p))
	}
	clustered := n - sink - window
	for range layers {
		var heads []sparse.Head
		for range kvHeads {
			order := make([]int32, clustered)
			for i := range order {
				order[i] = int32(sink + i)
			}
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			split := int32(rng.IntN(clustered + 1))
			cent := func(k int) []float32 {
				c := make([]float32, k*dim)
				for i := range c {
					c[i] = float32(rng.NormFloat64())
				}
				return c
			}
			tree, err := index.New(dim, []index.Level{
				{Centroids: cent(1), Start: []int32{0, 2}},
				{Centroids: cent(2), Start: []int32{0, split, int32(clustered)}},
			}, order)
			if err != nil {
				t.Fatal(err)
			}
			heads = append(heads, sparse.Head{
				Tree: tree, Keys: f16s(clustered), Values: f16s(clustered),
				Always: append([]int32(nil), always...), AlwaysK: f16s(len(always)), AlwaysV: f16s(len(always)),
			})
		}
		c.Layers = append(c.Layers, heads)
	}
	c.Thresholds = []sparse.Threshold{
		{Budget: 0.125, Fraction: 0.13, LogTau: []float32{float32(math.Inf(-1)), -3.5}},
		{Budget: 0.5, Fraction: 0.49, LogTau: []float32{-2, -6}},
	}
	return &Artifact{
		Header: Header{
			Model: ModelInfo{
				File: "tiny.gguf", Fingerprint: strings.Repeat("ab", 32), TokenizerFingerprint: strings.Repeat("cd", 32),
				Arch: "llama", Layers: layers, Dim: dim * 4, Heads: kvHeads * 2, KVHeads: kvHeads, HeadDim: dim,
				Vocab: 100, ContextLength: 4096, RopeBase: 10000, RopeDim: dim, RopeScale: 1,
			},
			Settings: Settings{
				KV: KVEncodingF16, Fractions: []float64{0.01, 0.05}, Seed: 7, Sink: sink, Window: window,
				Budget: 0.125, CentroidCost: 1, Batch: 512, Cache: "f16",
				HeaderTemplate: "==== {path} ====\n", System: "sys",
			},
			Tokens:      n,
			Documents:   []Document{{Path: "a.go", Offset: 3, Bytes: 4}, {Path: "b/c.go", Offset: 20, Bytes: 5}},
			Calibration: []CalibrationStats{{KeyFraction: 0.1, CentroidFraction: 0.03, LevelKeyFractions: []float64{0.5, 0.1}}, {KeyFraction: 0.45, CentroidFraction: 0.04, LevelKeyFractions: []float64{1, 0.45}}},
		},
		Context: c,
		Text:    "sys==== a.go ====\nabcd==== b/c.go ====\nhello",
	}
}

// sameArtifact fails unless a and b hold the same content.
func sameArtifact(t *testing.T, a, b *Artifact) {
	t.Helper()
	ha, hb := a.Header, b.Header
	ha.Schema, hb.Schema = 0, 0
	if !reflect.DeepEqual(ha, hb) {
		t.Fatalf("header:\n got %+v\nwant %+v", hb, ha)
	}
	if a.Text != b.Text {
		t.Fatalf("text %q, want %q", b.Text, a.Text)
	}
	ca, cb := a.Context, b.Context
	if !reflect.DeepEqual(ca.Tokens, cb.Tokens) || !reflect.DeepEqual(ca.Thresholds, cb.Thresholds) {
		t.Fatalf("tokens or thresholds differ")
	}
	if len(ca.Layers) != len(cb.Layers) {
		t.Fatalf("%d layers, want %d", len(cb.Layers), len(ca.Layers))
	}
	for l := range ca.Layers {
		for h := range ca.Layers[l] {
			x, y := &ca.Layers[l][h], &cb.Layers[l][h]
			tx, _ := x.Tree.MarshalBinary()
			ty, _ := y.Tree.MarshalBinary()
			if !bytes.Equal(tx, ty) {
				t.Fatalf("layer %d head %d: trees differ", l, h)
			}
			if !reflect.DeepEqual(x.Always, y.Always) {
				t.Fatalf("layer %d head %d: always %v, want %v", l, h, y.Always, x.Always)
			}
			for _, p := range [][2]sparse.Rows{{x.Keys, y.Keys}, {x.Values, y.Values}, {x.AlwaysK, y.AlwaysK}, {x.AlwaysV, y.AlwaysV}} {
				if !reflect.DeepEqual(p[0], p[1]) {
					t.Fatalf("layer %d head %d: rows differ", l, h)
				}
			}
		}
	}
}

func writeTestArtifact(t *testing.T, a *Artifact) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctx.sqz")
	if err := WriteArtifact(path, a); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestArtifactRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		layers, kv, dim, toks int
	}{
		{"one head", 1, 1, 4, 5},
		{"gqa", 3, 2, 16, 40},
		{"odd dim", 2, 3, 7, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testArtifact(t, tc.layers, tc.kv, tc.dim, tc.toks, 1)
			path, data := writeTestArtifact(t, a)
			b, err := ReadArtifact(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.Header.Schema != SchemaVersion {
				t.Fatalf("schema %d", b.Header.Schema)
			}
			sameArtifact(t, a, b)
			// The rows are views of the mapping whose values start on a cache line.
			for l, layer := range b.Context.Layers {
				for h, hd := range layer {
					for _, r := range []sparse.Rows{hd.Keys, hd.Values, hd.AlwaysK, hd.AlwaysV} {
						if d := r.(*sparse.F16Rows).Data; len(d) > 0 && uintptr(unsafe.Pointer(&d[0]))%Alignment != 0 {
							t.Fatalf("layer %d head %d: f16 rows at %p, not on a line", l, h, &d[0])
						}
					}
				}
			}
			p, err := ParseArtifact(data)
			if err != nil {
				t.Fatal(err)
			}
			sameArtifact(t, a, p)
			// Deterministic bytes.
			_, again := writeTestArtifact(t, a)
			if !bytes.Equal(data, again) {
				t.Fatal("two writes of the same artifact differ")
			}
			// The layer sections are stored raw, so rows are views of the mapping.
			r, _ := Open(path)
			defer r.Close()
			for _, s := range r.Sections() {
				if strings.HasPrefix(s.Name, "layer.") && s.Compression != CompressionNone {
					t.Fatalf("section %s compressed", s.Name)
				}
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestArtifactSchema2 checks that artifacts of schema 2, whose rows start their values
// right after a count on a cache line, are still read, f16 and quantized alike.
func TestArtifactSchema2(t *testing.T) {
	writeSchema = 2
	defer func() { writeSchema = SchemaVersion }()
	for _, a := range []*Artifact{
		testArtifact(t, 2, 2, 16, 40, 1),
		quantizedTestArtifact(t, 2, 2, 16, 60, 3, "nuq3", false, kvquant.PerChannel),
	} {
		path, _ := writeTestArtifact(t, a)
		b, err := ReadArtifact(path)
		if err != nil {
			t.Fatal(err)
		}
		if b.Header.Schema != 2 {
			t.Fatalf("schema %d", b.Header.Schema)
		}
		for l := range a.Context.Layers {
			for h := range a.Context.Layers[l] {
				x, y := &a.Context.Layers[l][h], &b.Context.Layers[l][h]
				for i, p := range [][2]sparse.Rows{{x.Keys, y.Keys}, {x.Values, y.Values}, {x.AlwaysK, y.AlwaysK}, {x.AlwaysV, y.AlwaysV}} {
					if !slices.Equal(decoded(p[0], 16), decoded(p[1], 16)) {
						t.Fatalf("%s: layer %d head %d rows %d decode differently", a.Header.Settings.KV, l, h, i)
					}
				}
			}
		}
		b.Close()
	}
}

func TestCheckModel(t *testing.T) {
	a := testArtifact(t, 1, 1, 4, 5, 1)
	if err := CheckModel(a, "x.gguf", a.Header.Model.Fingerprint); err != nil {
		t.Fatal(err)
	}
	err := CheckModel(a, "other.gguf", strings.Repeat("00", 32))
	if !errors.Is(err, ErrModelMismatch) || !strings.Contains(err.Error(), "tiny.gguf") || !strings.Contains(err.Error(), "other.gguf") {
		t.Fatalf("CheckModel: %v", err)
	}
}

func TestWriteArtifactRefusesInconsistent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(a *Artifact)
	}{
		{"token count", func(a *Artifact) { a.Header.Tokens++ }},
		{"layers", func(a *Artifact) { a.Header.Model.Layers++ }},
		{"kv heads", func(a *Artifact) { a.Header.Model.KVHeads++ }},
		{"head dim", func(a *Artifact) { a.Header.Model.HeadDim++ }},
		{"nan threshold", func(a *Artifact) { a.Context.Thresholds[0].LogTau[1] = float32(math.NaN()) }},
		{"descending budgets", func(a *Artifact) { a.Context.Thresholds[1].Budget = 0.1 }},
		{"kv encoding", func(a *Artifact) { a.Header.Settings.KV = "nuq4" }},
		{"short rows", func(a *Artifact) {
			r := a.Context.Layers[0][0].Keys.(*sparse.F16Rows)
			r.Data = r.Data[:len(r.Data)-1]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testArtifact(t, 2, 2, 4, 9, 1)
			tc.modify(a)
			dir := t.TempDir()
			if err := WriteArtifact(filepath.Join(dir, "x.sqz"), a); err == nil {
				t.Fatal("no error")
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("left %d files", len(ents))
			}
		})
	}
}

func TestArtifactDamage(t *testing.T) {
	a := testArtifact(t, 2, 2, 8, 30, 3)
	_, data := writeTestArtifact(t, a)
	rng := rand.New(rand.NewPCG(9, 9))
	check := func(what string, b []byte) {
		t.Helper()
		_, err := ParseArtifact(b)
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotArtifact) {
			t.Fatalf("%s: %v wraps neither ErrCorrupt nor ErrNotArtifact", what, err)
		}
	}
	for _, n := range []int{0, 1, 64, len(data) / 2, len(data) - 33, len(data) - 1} {
		check("truncated", data[:n])
	}
	for range 200 {
		b := bytes.Clone(data)
		i := rng.IntN(len(b))
		b[i] ^= 1 << rng.IntN(8)
		check("bit flip", b)
	}
}

// layerPayloads returns the raw header and layer.0 payloads of a's file.
func artifactPayloads(t testing.TB, a *Artifact) (header, layer []byte) {
	path := filepath.Join(t.TempDir(), "a.sqz")
	if err := WriteArtifact(path, a); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	h, err := r.Section(SectionHeader)
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.Section(LayerSection(0))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(h), bytes.Clone(l)
}

// TestSectionPayloadDamage damages the payloads behind their checksums: the schema checks
// must catch what the container cannot.
func TestSectionPayloadDamage(t *testing.T) {
	a := testArtifact(t, 1, 2, 4, 12, 5)
	hdr, layer := artifactPayloads(t, a)
	h, _, err := decodeHeader(NewDecoder(SectionHeader, hdr))
	if err != nil {
		t.Fatal(err)
	}
	seen := make([]bool, h.Tokens)
	if _, err := decodeLayer(NewDecoder("layer.0", layer), h, seen); err != nil {
		t.Fatal(err)
	}
	for n := range len(layer) {
		if _, err := decodeLayer(NewDecoder("layer.0", layer[:n]), h, seen); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("layer truncated to %d: %v", n, err)
		}
	}
	for n := range len(hdr) {
		if _, _, err := decodeHeader(NewDecoder(SectionHeader, hdr[:n])); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("header truncated to %d: %v", n, err)
		}
	}
	for _, schema := range []byte{byte(SchemaVersion) + 1, 1} {
		other := bytes.Clone(hdr)
		other[0] = schema
		if _, _, err := decodeHeader(NewDecoder(SectionHeader, other)); !errors.Is(err, ErrSchema) {
			t.Fatalf("schema %d: %v", schema, err)
		}
	}
	zero := bytes.Clone(hdr)
	zero[0] = 0
	if _, _, err := decodeHeader(NewDecoder(SectionHeader, zero)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("schema 0: %v", err)
	}
}

// FuzzParseArtifact feeds whole files to ParseArtifact: no input may panic, and every error
// must wrap a sentinel.
func FuzzParseArtifact(f *testing.F) {
	a := testArtifact(f, 2, 2, 4, 9, 1)
	path := filepath.Join(f.TempDir(), "a.sqz")
	if err := WriteArtifact(path, a); err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseArtifact(data)
		if err != nil {
			if !isFileError(err) && !errors.Is(err, ErrSchema) && !errors.Is(err, ErrNoSection) {
				t.Fatalf("%v wraps no sentinel", err)
			}
			return
		}
		if len(b.Context.Tokens) != b.Header.Tokens {
			t.Fatal("inconsistent artifact accepted")
		}
	})
}

// FuzzArtifactSections feeds the header and layer payload decoders directly, past the
// checksums that make whole-file fuzzing stop early.
func FuzzArtifactSections(f *testing.F) {
	a := testArtifact(f, 1, 2, 4, 12, 5)
	hdr, layer := artifactPayloads(f, a)
	f.Add(hdr, layer)
	f.Add(hdr[:len(hdr)-3], layer[:10])
	f.Fuzz(func(t *testing.T, hdr, layer []byte) {
		h, th, err := decodeHeader(NewDecoder(SectionHeader, hdr))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrSchema) {
				t.Fatalf("header: %v wraps no sentinel", err)
			}
			return
		}
		if err := checkHeader(h, th); err != nil {
			t.Fatalf("accepted header fails its check: %v", err)
		}
		if h.Tokens > 1<<20 {
			return
		}
		heads, err := decodeLayer(NewDecoder("layer.0", layer), h, make([]bool, h.Tokens))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("layer: %v wraps no sentinel", err)
			}
			return
		}
		for _, hd := range heads {
			if hd.Tree.Len()+len(hd.Always) != h.Tokens || hd.Keys.Len() != hd.Tree.Len() {
				t.Fatal("inconsistent layer accepted")
			}
		}
	})
}

// BenchmarkModelFingerprint fingerprints the 44 MB gocode-22m model (what ask pays per
// load to refuse an artifact of another model).
func BenchmarkModelFingerprint(b *testing.B) {
	path := filepath.Join("..", "..", "shared", "models", "gocode-22m", "gocode-22m.gguf")
	f, err := gguf.Open(path)
	if err != nil {
		b.Skipf("model absent: %v", err)
	}
	defer f.Close()
	for b.Loop() {
		if _, err := ModelFingerprint(path, f); err != nil {
			b.Fatal(err)
		}
	}
}

func TestModelFingerprint(t *testing.T) {
	dir := t.TempDir()
	fp := func(name string, spec modeltest.Spec, flip int) string {
		t.Helper()
		path := filepath.Join(dir, name)
		data, err := modeltest.Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		if flip > 0 {
			data[len(data)-flip] ^= 1
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s, err := ModelFingerprint(path, f)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := fp("a.gguf", modeltest.Spec{Seed: 1}, 0)
	if again := fp("b.gguf", modeltest.Spec{Seed: 1}, 0); again != base {
		t.Fatal("the same model has two fingerprints")
	}
	for name, other := range map[string]string{
		"other weights":  fp("c.gguf", modeltest.Spec{Seed: 2}, 0),
		"one bit":        fp("d.gguf", modeltest.Spec{Seed: 1}, 3),
		"other metadata": fp("e.gguf", modeltest.Spec{Seed: 1, Meta: map[string]any{"general.name": "x"}}, 0),
	} {
		if other == base {
			t.Errorf("%s: same fingerprint", name)
		}
	}
}

func TestTokenizerFingerprint(t *testing.T) {
	base := tokenizer.Vocab{Model: "gpt2", Tokens: []string{"a", "b", "ab"}, Merges: []string{"a b"}, BOS: 0, EOS: 1, UNK: -1, PAD: -1, EOT: -1}
	same := base
	same.Tokens = slices.Clone(base.Tokens)
	if TokenizerFingerprint(base) != TokenizerFingerprint(same) {
		t.Fatal("equal vocabularies differ")
	}
	for name, modify := range map[string]func(v *tokenizer.Vocab){
		"token":       func(v *tokenizer.Vocab) { v.Tokens = []string{"a", "b", "ba"} },
		"split token": func(v *tokenizer.Vocab) { v.Tokens = []string{"a", "bab", ""} },
		"merge":       func(v *tokenizer.Vocab) { v.Merges = nil },
		"pre":         func(v *tokenizer.Vocab) { v.Pre = "llama-bpe" },
		"bos":         func(v *tokenizer.Vocab) { v.BOS = 2 },
		"add bos":     func(v *tokenizer.Vocab) { v.AddBOS = true },
	} {
		v := base
		modify(&v)
		if TokenizerFingerprint(v) == TokenizerFingerprint(base) {
			t.Errorf("%s: same fingerprint", name)
		}
	}
}
