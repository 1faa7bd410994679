package precompute

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"squeeze/format"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/sparse"
	"squeeze/runtime/testfiles"
	"squeeze/runtime/tokenizer"
)

// syntheticModel writes a small random model with a tokenizer and returns its path.
func syntheticModel(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := modeltest.Write(path, modeltest.Spec{Tokenizer: true, Context: 1024, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeFiles creates files (relative path -> content) under dir.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// corpus is a small input tree: text files, a binary file and a hidden directory.
func corpus(t testing.TB) string {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.go":           strings.Repeat("package a\n\nfunc A() int { return 1 }\n", 6),
		"sub/b.go":       strings.Repeat("package b // some words about b\n", 8),
		"sub/notes.txt":  strings.Repeat("notes on the design of b\n", 5),
		"sub/blob.bin":   "abc\x00def",
		".git/HEAD":      "ref: refs/heads/main\n",
		"sub/latin1.txt": "caf\xe9\n",
	})
	return dir
}

func runOptions(modelPath, out string, inputs ...string) Options {
	return Options{
		Model: modelPath, Output: out, Inputs: inputs, Threads: 2, HeaderTemplate: DefaultHeaderTemplate,
		Squeeze: SqueezeOptions{Window: 16, Seed: 1, Batch: 64},
	}
}

func TestRunSynthetic(t *testing.T) {
	mp := syntheticModel(t)
	in := corpus(t)
	out := filepath.Join(t.TempDir(), "ctx.sqz")
	var stages []Stage
	opts := runOptions(mp, out, in)
	opts.System = "You answer questions about this code."
	opts.Squeeze.Progress = func(p Progress) {
		if len(stages) == 0 || stages[len(stages)-1] != p.Stage {
			stages = append(stages, p.Stage)
		}
	}
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Stage{StageRead, StageTokenize, StagePrefill, StageCluster, StageCalibrate, StageWrite}; !slices.Equal(stages, want) {
		t.Errorf("stages %v, want %v", stages, want)
	}
	if res.Documents != 3 || len(res.Skipped) != 2 {
		t.Errorf("%d documents, skipped %v; want 3 and 2", res.Documents, res.Skipped)
	}
	a, err := format.ReadArtifact(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	f, err := gguf.Open(mp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := Tokenize(tok, a.Text); !slices.Equal(got, a.Context.Tokens) {
		t.Fatal("artifact tokens are not the tokens of its text")
	}
	if !strings.HasPrefix(a.Text, opts.System+"\n==== ") || !strings.Contains(a.Text, "==== "+filepath.ToSlash(filepath.Join(in, "sub/b.go"))+" ====\n") {
		t.Fatalf("text does not start with the system text and headers:\n%.200s", a.Text)
	}
	for _, d := range a.Header.Documents {
		if body := a.Text[d.Offset : d.Offset+d.Bytes]; !strings.HasPrefix(body, "package") && !strings.HasPrefix(body, "notes") {
			t.Fatalf("document %s at %d: %.20q", d.Path, d.Offset, body)
		}
	}
	fp, err := format.ModelFingerprint(mp, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := format.CheckModel(a, mp, fp); err != nil {
		t.Fatal(err)
	}
	h := a.Header
	if h.Settings.Window != 16 || h.Settings.Sink != 1 || h.Model.Layers != 2 || h.Model.KVHeads != 2 {
		t.Fatalf("header %+v", h)
	}
	var budgets []float64
	for i, th := range a.Context.Thresholds {
		budgets = append(budgets, th.Budget)
		if math.IsNaN(th.Fraction) || th.Fraction <= 0 {
			t.Errorf("threshold %d: fraction %v", i, th.Fraction)
		}
	}
	if !slices.Equal(budgets, []float64{1.0 / 16, 1.0 / 8, 1.0 / 4, 0.325, 1.0 / 2}) {
		t.Errorf("budgets %v", budgets)
	}
	if h.Calibration[len(h.Calibration)-1].KeyFraction <= h.Calibration[0].KeyFraction {
		t.Errorf("a larger budget selects no more keys: %+v", h.Calibration)
	}
	// Stored rows are the model's keys: the always-attended rows match a fresh prefill.
	m, err := model.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := m.NewCache(len(a.Context.Tokens), model.CacheF32)
	pool := kernels.NewPool(1)
	defer pool.Close()
	if err := m.Forward(pool, c, a.Context.Tokens, nil, nil); err != nil {
		t.Fatal(err)
	}
	// The sparse runtime accepts the artifact's context at every calibrated budget.
	for _, b := range []float64{0.0625, 0.25, 1} {
		if _, err := sparse.NewSession(a.Context, m, pool, b); err != nil {
			t.Fatalf("budget %g: %v", b, err)
		}
	}
	for l, heads := range a.Context.Layers {
		for hi, hd := range heads {
			d := h.Model.HeadDim
			for j, p := range hd.Always {
				want, err := c.Keys(l, hi, int(p), int(p)+1, make([]float32, d))
				if err != nil {
					t.Fatal(err)
				}
				rows, ok := hd.AlwaysK.(*sparse.F16Rows)
				if !ok {
					t.Fatalf("rows of type %T", hd.AlwaysK)
				}
				for k := range d {
					g := kernels.F16ToF32(rows.Data[j*d+k])
					if math.Abs(float64(g-want[k])) > 1e-2*(1+math.Abs(float64(want[k]))) {
						t.Fatalf("layer %d head %d position %d dim %d: stored key %v, forward %v", l, hi, p, k, g, want[k])
					}
				}
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	mp := syntheticModel(t)
	in := corpus(t)
	dir := t.TempDir()
	var files [][]byte
	for i, threads := range []int{1, 2} {
		out := filepath.Join(dir, "ctx"+string(rune('a'+i))+".sqz")
		opts := runOptions(mp, out, in)
		opts.Threads = threads
		if _, err := Run(context.Background(), opts); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("two runs on the same inputs gave different artifacts")
	}
}

func TestCancel(t *testing.T) {
	mp := syntheticModel(t)
	in := corpus(t)
	for _, stage := range []Stage{StageRead, StagePrefill, StageCluster, StageCalibrate, StageWrite} {
		t.Run(string(stage), func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opts := runOptions(mp, filepath.Join(dir, "ctx.sqz"), in)
			opts.Squeeze.Progress = func(p Progress) {
				if p.Stage == stage {
					cancel()
				}
			}
			_, err := Run(ctx, opts)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want context.Canceled", err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("cancelled run left %d files", len(ents))
			}
		})
	}
}

func TestContextTooLong(t *testing.T) {
	mp := syntheticModel(t)
	in := corpus(t)
	dir := t.TempDir()
	opts := runOptions(mp, filepath.Join(dir, "ctx.sqz"), in)
	opts.ContextLength = 50
	_, err := Run(context.Background(), opts)
	if !errors.Is(err, ErrContextTooLong) || !strings.Contains(err.Error(), "more than the context length of 50") {
		t.Fatalf("error %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatal("left a file")
	}
}

// TestOutputIsInput checks that Run refuses, before any work, an output that names a
// file it reads or a directory, and leaves that file as it was.
func TestOutputIsInput(t *testing.T) {
	mp := syntheticModel(t)
	in := corpus(t)
	calib := filepath.Join(t.TempDir(), "calib.txt")
	writeFiles(t, filepath.Dir(calib), map[string]string{"calib.txt": strings.Repeat("calibration words\n", 20)})
	doc := filepath.Join(in, "sub", "notes.txt")
	cases := []struct {
		name, output string
		inputs       []string
		calib        string
		want         error
	}{
		{"a document named as input", doc, []string{doc}, "", ErrOutputIsInput},
		{"a document found under a directory", doc, []string{in}, "", ErrOutputIsInput},
		{"the same document by another path", filepath.Join(in, "sub", "..", "sub", "notes.txt"), []string{in}, "", ErrOutputIsInput},
		{"the model", mp, []string{in}, "", ErrOutputIsInput},
		{"the calibration text", calib, []string{in}, calib, ErrOutputIsInput},
		{"a directory", filepath.Join(in, "sub"), []string{doc}, "", ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := os.ReadFile(c.output)
			if err != nil && c.want != ErrInvalid {
				t.Fatal(err)
			}
			opts := runOptions(mp, c.output, c.inputs...)
			opts.Calib = c.calib
			stages := 0
			opts.Squeeze.Progress = func(p Progress) {
				if p.Stage != StageRead {
					stages++
				}
			}
			_, err = Run(context.Background(), opts)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if stages > 0 {
				t.Errorf("%d stages past reading ran before the refusal", stages)
			}
			if c.want == ErrOutputIsInput {
				after, err := os.ReadFile(c.output)
				if err != nil || !bytes.Equal(after, before) {
					t.Fatalf("the refused output changed (%v)", err)
				}
			}
		})
	}
}

func TestReadInputs(t *testing.T) {
	dir := corpus(t)
	rel := func(p string) string { return filepath.ToSlash(filepath.Join(dir, p)) }
	for _, tc := range []struct {
		name             string
		inputs           []string
		include, exclude []string
		stdin            string
		docs             []string
		skipped          []string
		err              error
	}{
		{name: "directory", inputs: []string{dir}, docs: []string{"a.go", "sub/b.go", "sub/notes.txt"}, skipped: []string{"sub/blob.bin", "sub/latin1.txt"}},
		{name: "include base name", inputs: []string{dir}, include: []string{"*.go"}, docs: []string{"a.go", "sub/b.go"}},
		{name: "include path", inputs: []string{dir}, include: []string{"sub/*.go"}, docs: []string{"sub/b.go"}},
		{name: "exclude directory", inputs: []string{dir}, exclude: []string{"sub"}, docs: []string{"a.go"}},
		{name: "exclude files", inputs: []string{dir}, exclude: []string{"*.txt", "*.bin"}, docs: []string{"a.go", "sub/b.go"}},
		{name: "explicit file ignores globs", inputs: []string{filepath.Join(dir, "sub/notes.txt")}, include: []string{"*.go"}, docs: []string{"sub/notes.txt"}},
		{name: "file twice", inputs: []string{filepath.Join(dir, "a.go"), dir}, include: []string{"a.go"}, docs: []string{"a.go"}, skipped: []string{"a.go"}},
		{name: "stdin", inputs: []string{"-"}, stdin: "hello\n", docs: []string{"-"}},
		{name: "binary stdin", inputs: []string{"-", filepath.Join(dir, "a.go")}, stdin: "\x00", docs: []string{"a.go"}, skipped: []string{"-"}},
		{name: "nothing left", inputs: []string{dir}, include: []string{"*.rs"}, err: ErrNoInput},
		{name: "bad pattern", inputs: []string{dir}, exclude: []string{"["}, err: ErrPattern},
		{name: "missing", inputs: []string{filepath.Join(dir, "nope")}, err: os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, skipped, err := ReadInputs(context.Background(), tc.inputs, InputOptions{
				Include: tc.include, Exclude: tc.exclude, Stdin: strings.NewReader(tc.stdin),
			})
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			name := func(p string) string {
				if p == "-" {
					return p
				}
				return strings.TrimPrefix(p, rel("")+"/")
			}
			var gotDocs, gotSkipped []string
			for _, d := range docs {
				gotDocs = append(gotDocs, name(d.Path))
			}
			for _, s := range skipped {
				gotSkipped = append(gotSkipped, name(s.Path))
				if s.Reason == "" {
					t.Errorf("%s skipped without a reason", s.Path)
				}
			}
			if !slices.Equal(gotDocs, tc.docs) || !slices.Equal(gotSkipped, tc.skipped) {
				t.Fatalf("documents %v skipped %v, want %v and %v", gotDocs, gotSkipped, tc.docs, tc.skipped)
			}
		})
	}
}

func TestJoin(t *testing.T) {
	docs := []Document{{Path: "a", Text: "x"}, {Path: "b", Text: "yy\n"}, {Path: "c", Text: ""}}
	text, spans := Join(docs, "// {path}\n", "sys")
	if want := "sys\n// a\nx\n// b\nyy\n// c\n"; text != want {
		t.Fatalf("text %q, want %q", text, want)
	}
	for i, s := range spans {
		if text[s.Offset:s.Offset+s.Bytes] != docs[i].Text {
			t.Fatalf("span %d: %q", i, text[s.Offset:s.Offset+s.Bytes])
		}
	}
}

// TestProjection checks the projection code (norm, matrix, bias, RoPE) against the forward
// pass by computing keys with it, which the observer also reports.
func TestProjection(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2"} {
		t.Run(arch, func(t *testing.T) {
			f := modeltest.Open(t, modeltest.Spec{Arch: arch, Seed: 5})
			m, err := model.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			proj, err := newProjection(m, f, "attn_k", m.Config.KVDim())
			if err != nil {
				t.Fatal(err)
			}
			pool := kernels.NewPool(1)
			defer pool.Close()
			c, _ := m.NewCache(32, model.CacheF32)
			tokens := []int32{1, 5, 9, 200, 3, 7, 8, 9}
			checked := 0
			err = m.Forward(pool, c, tokens, nil, &model.Options{Observe: func(s *model.LayerState) {
				got := proj.queries(pool, s.Layer, s.Input, s.Tokens, s.Pos)
				for i := range got {
					if math.Abs(float64(got[i]-s.Keys[i])) > 1e-4*(1+math.Abs(float64(s.Keys[i]))) {
						t.Fatalf("layer %d element %d: %v, forward %v", s.Layer, i, got[i], s.Keys[i])
					}
				}
				checked++
			}})
			if err != nil || checked != m.Config.Layers {
				t.Fatalf("err %v, %d layers checked", err, checked)
			}
		})
	}
}

// TestDemoModel precompute's a few of the repository's Go files with the demo model.
func TestDemoModel(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: prefill and clustering with the demo model")
	}
	root := testfiles.Root(t)
	mp := filepath.Join(root, "testdata", "gocode-demo.gguf")
	if _, err := os.Stat(mp); err != nil {
		t.Skipf("demo model not found: %v", err)
	}
	out := filepath.Join(t.TempDir(), "demo.sqz")
	opts := runOptions(mp, out, filepath.Join(root, "format"))
	opts.Input.Include = []string{"errors.go", "zstd.go", "doc.go"}
	opts.Squeeze.Window = 0
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tokens in %.2fs (prefill %.0f tokens/s), %d bytes", res.Tokens, res.Seconds, res.PrefillTokensPerSecond, res.FileBytes)
	a, err := format.ReadArtifact(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Header.Settings.Window != DefaultWindow || len(a.Context.Tokens) < 1000 {
		t.Fatalf("window %d, %d tokens", a.Header.Settings.Window, len(a.Context.Tokens))
	}
	for i, th := range a.Context.Thresholds {
		if th.Fraction > 2*th.Budget+0.05 {
			t.Errorf("threshold %d: budget %g measured %g", i, th.Budget, th.Fraction)
		}
	}
}
