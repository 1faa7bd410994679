package cmd

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"squeeze/format"
	"squeeze/hierarchy"
	"squeeze/runtime/decode"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/sparse"
	"squeeze/runtime/tokenizer"
)

// askSpec is the small random model the ask tests build artifacts for.
var askSpec = modeltest.Spec{Layers: 2, Dim: 64, Heads: 4, KVHeads: 2, Context: 1024, Tokenizer: true, Seed: 3}

const askText = "the quick brown fox jumps over the lazy dog while a slow green turtle " +
	"watches from the river bank and counts the clouds that pass above the hills"

// askFixture writes a model and an artifact of askText for it (in the same directory)
// and returns their paths and the context's tokens.
func askFixture(t *testing.T) (modelPath, artifactPath string, tokens []int32) {
	t.Helper()
	return askFixtureSpec(t, askSpec)
}

// askFixtureSpec is askFixture for the model spec describes.
func askFixtureSpec(t *testing.T, spec modeltest.Spec) (modelPath, artifactPath string, tokens []int32) {
	t.Helper()
	dir := t.TempDir()
	modelPath = filepath.Join(dir, "tiny.gguf")
	if err := modeltest.Write(modelPath, spec); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := model.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := format.ModelFingerprint(modelPath, f)
	if err != nil {
		t.Fatal(err)
	}
	tokens = tok.Encode(askText, true)
	S := len(tokens)
	pool := kernels.NewPool(2)
	defer pool.Close()
	cache, err := m.NewCache(S, model.CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(pool, cache, tokens, nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg := &m.Config
	hd := cfg.HeadDim
	const sink, window = 2, 8
	fractions := []float64{0.1, 0.3}
	c := &sparse.Context{Tokens: tokens, Layers: make([][]sparse.Head, cfg.Layers)}
	for l := range cfg.Layers {
		for h := range cfg.KVHeads {
			k, err := cache.Keys(l, h, 0, S, make([]float32, S*hd))
			if err != nil {
				t.Fatal(err)
			}
			v, err := cache.Values(l, h, 0, S, make([]float32, S*hd))
			if err != nil {
				t.Fatal(err)
			}
			var ck, always []int32
			var keys []float32
			for p := range S {
				if p < sink || p >= S-window {
					always = append(always, int32(p))
				} else {
					ck = append(ck, int32(p))
					keys = append(keys, k[p*hd:(p+1)*hd]...)
				}
			}
			tree, err := hierarchy.Build(context.Background(), keys, hd, ck, hierarchy.Config{Fractions: fractions, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			gather := func(src []float32, pos []int32) *sparse.F16Rows {
				rows := make([]float32, 0, len(pos)*hd)
				for _, p := range pos {
					rows = append(rows, src[int(p)*hd:(int(p)+1)*hd]...)
				}
				r := &sparse.F16Rows{Dim: hd, Data: make([]uint16, len(rows))}
				kernels.F32ToF16Slice(r.Data, rows)
				return r
			}
			c.Layers[l] = append(c.Layers[l], sparse.Head{
				Tree: tree, Keys: gather(k, tree.Order()), Values: gather(v, tree.Order()),
				Always: always, AlwaysK: gather(k, always), AlwaysV: gather(v, always),
			})
		}
	}
	tau := float32(math.Log(1 / float64(S-sink-window)))
	c.Thresholds = []sparse.Threshold{{Budget: 0.5, Fraction: 0.5, LogTau: []float32{tau, tau}}}
	a := &format.Artifact{
		Header: format.Header{
			Model: format.ModelInfo{
				File: "tiny.gguf", Fingerprint: fp, Arch: cfg.Arch, Layers: cfg.Layers, Dim: cfg.Dim,
				Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: hd, Vocab: cfg.Vocab, ContextLength: cfg.ContextLength,
				RopeBase: cfg.RopeBase, RopeDim: cfg.RopeDim, RopeScale: cfg.RopeScale,
			},
			Settings: format.Settings{KV: format.KVEncodingF16, Fractions: fractions, Seed: 1, Sink: sink, Window: window, Budget: 0.5, CentroidCost: 1, Batch: 512, Cache: "f32"},
			Tokens:   S,
		},
		Context: c,
		Text:    askText,
	}
	artifactPath = filepath.Join(dir, "ctx.sqz")
	if err := format.WriteArtifact(artifactPath, a); err != nil {
		t.Fatal(err)
	}
	return modelPath, artifactPath, tokens
}

func TestAskDenseMatchesOnePrompt(t *testing.T) {
	isolate(t)
	modelPath, art, tokens := askFixture(t)
	const query = "where is the fox"
	r := runCLI(t, context.Background(), "", false, "ask", "--json", "--dense", "--temp", "0", "-n", "10", "--threads", "2", art, query)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var rep askReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	// The same greedy answer from the context and the query as one prompt, dense.
	f, err := gguf.Open(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := model.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	q := tok.Encode("\n"+query, false)
	e := decode.Engine{Model: m, Tokenizer: tok}
	want, err := e.GenerateTokens(context.Background(), append(slices.Clone(tokens), q...), decode.Options{MaxTokens: 10, Cache: model.CacheF16})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Tokens, want.Tokens) || rep.Text != want.Text {
		t.Fatalf("ask --dense: %v %q\none prompt:  %v %q", rep.Tokens, rep.Text, want.Tokens, want.Text)
	}
	if rep.PromptTokens != len(q) || rep.ContextTokens != len(tokens) || !rep.Dense || rep.RealizedBudget != 1 ||
		rep.KeysFraction != 1 || rep.CentroidsFraction != 0 || rep.LoadMS <= 0 || rep.TTFTMS <= 0 || rep.Threads != 2 ||
		rep.Model != modelPath {
		t.Fatalf("report %+v", rep)
	}
}

func TestAskSparse(t *testing.T) {
	isolate(t)
	_, art, _ := askFixture(t)
	r := runCLI(t, context.Background(), "", false, "ask", "--json", "--temp", "0", "-n", "6", art, "what does the turtle count")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &obj); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	for _, key := range []string{"text", "tokens", "load_ms", "ttft_ms", "decode_tokens_per_s", "realized_budget", "prompt_tokens", "keys_fraction", "centroids_fraction"} {
		if _, ok := obj[key]; !ok {
			t.Errorf("JSON lacks %q: %s", key, r.stdout)
		}
	}
	var rep askReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Dense || rep.Budget != 0.5 || !(rep.KeysFraction > 0 && rep.KeysFraction < 1) || rep.CentroidsFraction <= 0 ||
		math.Abs(rep.RealizedBudget-rep.KeysFraction-rep.CentroidsFraction) > 1e-12 || len(rep.Tokens) != 6 {
		t.Fatalf("report %+v", rep)
	}

	// Streaming prints the same text, with a final newline.
	r2 := runCLI(t, context.Background(), "what does the turtle count", false, "ask", "--temp", "0", "-n", "6", art, "-")
	if r2.code != 0 {
		t.Fatalf("exit %d, stderr %q", r2.code, r2.stderr)
	}
	if want := strings.TrimSuffix(rep.Text, "\n") + "\n"; r2.stdout != want {
		t.Fatalf("streamed %q, want %q", r2.stdout, want)
	}
}

// TestAskPipeline checks that on a parameter-shared model greedy answers run the
// pipelined form (--speculate auto and early), reported in the JSON, with the tokens of
// --speculate off; and that --speculate ngram does not use it.
func TestAskPipeline(t *testing.T) {
	isolate(t)
	spec := askSpec
	spec.Layers, spec.BlockShare = 4, 2
	_, art, _ := askFixtureSpec(t, spec)
	ask := func(mode string) askReport {
		t.Helper()
		r := runCLI(t, context.Background(), "", false, "ask", "--json", "--temp", "0", "-n", "12", "--speculate", mode, art, "where is the fox")
		if r.code != 0 {
			t.Fatalf("--speculate %s: exit %d, stderr %q", mode, r.code, r.stderr)
		}
		var rep askReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
		}
		return rep
	}
	want := ask("off")
	if want.Pipeline != nil || want.Speculate != "off" {
		t.Fatalf("--speculate off: speculate %q, pipeline %+v", want.Speculate, want.Pipeline)
	}
	tests := []struct {
		mode     string
		pipeline bool
	}{{"auto", true}, {"early", true}, {"ngram", false}}
	for _, tt := range tests {
		rep := ask(tt.mode)
		if !slices.Equal(rep.Tokens, want.Tokens) || rep.Text != want.Text {
			t.Fatalf("--speculate %s: %v %q\n--speculate off: %v %q", tt.mode, rep.Tokens, rep.Text, want.Tokens, want.Text)
		}
		if got := rep.Pipeline != nil; got != tt.pipeline || (got && (rep.Speculate != "pipeline" || rep.Pipeline.Period != 2 ||
			rep.Pipeline.Tokens != len(rep.Tokens)-1 || rep.DecodePasses != rep.Pipeline.Steps)) {
			t.Fatalf("--speculate %s: speculate %q, pipeline %+v, decode passes %d", tt.mode, rep.Speculate, rep.Pipeline, rep.DecodePasses)
		}
	}
}

func TestAskErrors(t *testing.T) {
	isolate(t)
	modelPath, art, _ := askFixture(t)
	dir := t.TempDir()
	other := filepath.Join(dir, "other.gguf")
	spec := askSpec
	spec.Seed = 99
	if err := modeltest.Write(other, spec); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(art)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.sqz")
	if err := os.WriteFile(truncated, data[:len(data)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(data)
	flipped[len(flipped)/2] ^= 0x40
	damaged := filepath.Join(dir, "damaged.sqz")
	if err := os.WriteFile(damaged, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"model mismatch", []string{"--model", other, art, "q"}, exitUsage, []string{other, "tiny.gguf", "another model"}},
		{"truncated artifact", []string{truncated, "q"}, exitModel, []string{truncated, "artifact"}},
		{"damaged artifact", []string{"--model", modelPath, damaged, "q"}, exitModel, []string{damaged, "corrupt"}},
		{"missing artifact", []string{filepath.Join(dir, "absent.sqz"), "q"}, exitModel, []string{"absent.sqz"}},
		{"budget below calibration", []string{"--budget", "0.1", art, "q"}, exitUsage, []string{"0.1", "0.5"}},
		{"bad budget", []string{"--budget", "-1", art, "q"}, exitUsage, []string{"--budget"}},
		{"template without query", []string{"--query-template", "Q:", art, "q"}, exitUsage, []string{"{query}"}},
		{"one argument", []string{art}, exitUsage, []string{"query"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, context.Background(), "", false, append([]string{"ask"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q lacks %q", r.stderr, w)
				}
			}
			if strings.Contains(r.stderr, "panic") || r.stdout != "" {
				t.Fatalf("stdout %q, stderr %q", r.stdout, r.stderr)
			}
		})
	}
}

func TestAskCancelled(t *testing.T) {
	isolate(t)
	_, art, _ := askFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := runCLI(t, ctx, "", false, "ask", "--temp", "0", "-n", "50", art, "q")
	if r.code != exitCancelled {
		t.Fatalf("exit %d, want %d; stderr %q", r.code, exitCancelled, r.stderr)
	}
}
