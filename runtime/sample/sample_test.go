package sample

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

var (
	inf = float32(math.Inf(1))
	nan = float32(math.NaN())
)

func allIdx(n int) []int32 {
	idx := make([]int32, n)
	for i := range idx {
		idx[i] = int32(i)
	}
	return idx
}

// sortedIDs returns a sorted copy, for comparing candidate sets whose order is free.
func sortedIDs(ids []int32) []int32 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"zero is greedy and valid", Options{}, true},
		{"typical", Options{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1.1, RepeatLastN: 64, Seed: 7}, true},
		{"negative temperature", Options{Temperature: -0.1}, false},
		{"NaN temperature", Options{Temperature: nan}, false},
		{"negative top-k", Options{TopK: -1}, false},
		{"top-p above 1", Options{TopP: 1.5}, false},
		{"top-p NaN", Options{TopP: nan}, false},
		{"min-p negative", Options{MinP: -0.1}, false},
		{"negative penalty", Options{RepeatPenalty: -1}, false},
		{"negative window", Options{RepeatLastN: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrOptions) {
				t.Fatalf("Validate() = %v, want ErrOptions", err)
			}
			_, err = New(tt.opts)
			if tt.ok != (err == nil) {
				t.Fatalf("New() error = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestApplyRepeatPenalty(t *testing.T) {
	// Expectations hand-computed: positive logits are divided by the penalty,
	// negative (and zero) ones multiplied, each distinct token once.
	tests := []struct {
		name    string
		logits  []float32
		recent  []int32
		penalty float32
		want    []float32
	}{
		{"positive divided", []float32{2, 1, 0.5}, []int32{0}, 2, []float32{1, 1, 0.5}},
		{"negative multiplied", []float32{-2, 1, 0.5}, []int32{0}, 2, []float32{-4, 1, 0.5}},
		{"zero stays zero", []float32{0, 1}, []int32{0}, 2, []float32{0, 1}},
		{"duplicates penalised once", []float32{3, 1, -1}, []int32{0, 0, 2, 0, 2}, 1.5, []float32{2, 1, -1.5}},
		{"out-of-range ids ignored", []float32{3, 1}, []int32{-1, 5, 1}, 2, []float32{3, 0.5}},
		{"penalty below 1 rewards", []float32{2, -2}, []int32{0, 1}, 0.5, []float32{4, -1}},
		{"empty window", []float32{2, -2}, nil, 2, []float32{2, -2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logits := slices.Clone(tt.logits)
			applyRepeatPenalty(logits, slices.Clone(tt.recent), tt.penalty)
			if !slices.Equal(logits, tt.want) {
				t.Fatalf("logits = %v, want %v", logits, tt.want)
			}
		})
	}
}

func TestArgmax(t *testing.T) {
	tests := []struct {
		name   string
		logits []float32
		want   int32
	}{
		{"simple", []float32{0.1, 3, -1, 2.9}, 1},
		{"tie takes lowest id", []float32{1, 5, 5, 2}, 1},
		{"NaN skipped", []float32{nan, 1, 2, nan}, 2},
		{"+Inf wins", []float32{1, inf, 3}, 1},
		{"all -Inf", []float32{-inf, -inf}, -1},
		{"all NaN", []float32{nan, nan}, -1},
		{"empty", nil, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := argmax(tt.logits); got != tt.want {
				t.Fatalf("argmax = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestTopK(t *testing.T) {
	logits := []float32{0.5, 2, -1, 2, 7, 3, 0, 3}
	tests := []struct {
		name string
		k    int
		want []int32 // as a set
	}{
		{"k=1", 1, []int32{4}},
		{"k=2", 2, []int32{4, 5}},
		{"k=3 tie broken by lower id", 3, []int32{4, 5, 7}},
		{"k=5", 5, []int32{1, 3, 4, 5, 7}},
		{"k=0 keeps all", 0, allIdx(8)},
		{"k=len keeps all", 8, allIdx(8)},
		{"k>len keeps all", 20, allIdx(8)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sortedIDs(topK(logits, allIdx(len(logits)), tt.k))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("topK = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSelectTopRandom checks quickselect against a full sort on random inputs with many
// ties, for every k.
func TestSelectTopRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 7, 31, 100, 257} {
		logits := make([]float32, n)
		for i := range logits {
			logits[i] = float32(rng.IntN(10)) // many ties
		}
		want := allIdx(n)
		sortDesc(logits, want)
		for k := 1; k <= n; k++ {
			idx := allIdx(n)
			rng.Shuffle(n, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
			selectTop(logits, idx, k)
			if got := sortedIDs(idx[:k]); !slices.Equal(got, sortedIDs(want[:k])) {
				t.Fatalf("n=%d k=%d: top = %v, want %v", n, k, got, sortedIDs(want[:k]))
			}
		}
	}
}

func TestTopP(t *testing.T) {
	// logits ln(0.5), ln(0.25), ln(0.15), ln(0.1): softmax is exactly 0.5, 0.25, 0.15, 0.1.
	ln := func(p float64) float32 { return float32(math.Log(p)) }
	logits := []float32{ln(0.15), ln(0.5), ln(0.1), ln(0.25)}
	tests := []struct {
		name string
		p    float32
		want []int32 // in order, most likely first
	}{
		{"p=0.3 needs only the top", 0.3, []int32{1}},
		{"p just below the top's 0.5", 0.499, []int32{1}},
		{"p=0.6 needs two", 0.6, []int32{1, 3}},
		{"p=0.8 needs three", 0.8, []int32{1, 3, 0}},
		{"p=0.95 needs all", 0.95, []int32{1, 3, 0, 2}},
		{"p=0 disabled", 0, []int32{0, 1, 2, 3}},
		{"p=1 disabled", 1, []int32{0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := topP(logits, allIdx(len(logits)), tt.p)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("topP = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestTopPLarge checks the incremental sort against a full sort on a vocabulary larger
// than the first selection rounds.
func TestTopPLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	logits := make([]float32, 5000)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64())
	}
	for _, p := range []float32{0.01, 0.2, 0.5, 0.9, 0.999} {
		full := allIdx(len(logits))
		sortDesc(logits, full)
		var sum float64
		for _, l := range logits {
			sum += math.Exp(float64(l))
		}
		var cum float64
		n := 0
		for n < len(full) {
			cum += math.Exp(float64(logits[full[n]]))
			n++
			if cum >= float64(p)*sum {
				break
			}
		}
		got := topP(logits, allIdx(len(logits)), p)
		if len(got) != n || !slices.Equal(got, full[:n]) {
			t.Fatalf("p=%v: kept %d tokens, want %d (prefix equal: %v)", p, len(got), n, slices.Equal(got, full[:min(n, len(got))]))
		}
	}
}

func TestMinP(t *testing.T) {
	// softmax of logits ln(0.5), ln(0.25), ln(0.15), ln(0.1) is 0.5, 0.25, 0.15, 0.1,
	// so min-p p keeps tokens with probability >= 0.5*p.
	ln := func(p float64) float32 { return float32(math.Log(p)) }
	logits := []float32{ln(0.15), ln(0.5), ln(0.1), ln(0.25)}
	tests := []struct {
		name string
		p    float32
		want []int32 // in input order
	}{
		{"p=0.1 keeps all", 0.1, []int32{0, 1, 2, 3}},
		{"p=0.25 drops 0.1", 0.25, []int32{0, 1, 3}},
		{"p=0.45 keeps >= 0.225", 0.45, []int32{1, 3}},
		{"p=1 keeps the max", 1, []int32{1}},
		{"p=0 disabled", 0, []int32{0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := minP(logits, allIdx(len(logits)), tt.p)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("minP = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDraw(t *testing.T) {
	// With temperature 1 and logits ln(0.5), ln(0.3), ln(0.2) the cumulative
	// probabilities are 0.5, 0.8, 1: u picks the first bucket it falls below.
	ln := func(p float64) float32 { return float32(math.Log(p)) }
	logits := []float32{ln(0.5), ln(0.3), ln(0.2)}
	tests := []struct {
		name string
		temp float32
		u    float64
		want int32
	}{
		{"u=0", 1, 0, 0},
		{"u just below 0.5", 1, 0.49, 0},
		{"u just above 0.5", 1, 0.51, 1},
		{"u=0.79", 1, 0.79, 1},
		{"u=0.81", 1, 0.81, 2},
		{"u near 1", 1, 0.999999, 2},
		// Temperature 0.5 squares the probabilities: 0.25, 0.09, 0.04 over 0.38,
		// cumulative 0.658, 0.895, 1.
		{"temp 0.5, u=0.65", 0.5, 0.65, 0},
		{"temp 0.5, u=0.66", 0.5, 0.66, 1},
		{"temp 0.5, u=0.9", 0.5, 0.9, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := draw(logits, allIdx(3), make([]float64, 3), tt.temp, tt.u); got != tt.want {
				t.Fatalf("draw = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestSampleGreedy(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		accept []int32
		logits []float32
		want   int32
	}{
		{"argmax", Options{}, nil, []float32{1, 4, 2}, 1},
		{"penalty moves the argmax", Options{RepeatPenalty: 2}, []int32{1}, []float32{1, 4, 2.5}, 2},
		{"penalty outside the window is forgotten", Options{RepeatPenalty: 2, RepeatLastN: 2}, []int32{1, 0, 2}, []float32{1, 4, 2.5}, 1},
		{"top-k ignored when greedy", Options{TopK: 1}, nil, []float32{1, 4, 2}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			s.Accept(tt.accept...)
			got, err := s.Sample(slices.Clone(tt.logits))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Sample = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestSampleNoCandidates(t *testing.T) {
	for _, opts := range []Options{{}, {Temperature: 1, TopP: 0.9, MinP: 0.1, TopK: 2}} {
		s, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, logits := range [][]float32{nil, {nan, nan}, {-inf, nan, -inf}} {
			if _, err := s.Sample(logits); !errors.Is(err, ErrNoCandidates) {
				t.Errorf("opts %+v, logits %v: err = %v, want ErrNoCandidates", opts, logits, err)
			}
		}
	}
}

func TestSampleInfAndNaN(t *testing.T) {
	// +Inf takes all the probability; NaN and -Inf none.
	s, err := New(Options{Temperature: 1, TopP: 0.9, MinP: 0.1, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		got, err := s.Sample([]float32{nan, 1, inf, -inf, 3})
		if err != nil || got != 2 {
			t.Fatalf("Sample = %d, %v; want 2", got, err)
		}
	}
}

func TestSampleTruncationStacks(t *testing.T) {
	// Top-k 3 over 0.4, 0.3, 0.2, 0.1 leaves 0.4, 0.3, 0.2 (renormalised 4/9, 3/9, 2/9);
	// top-p 0.7 then needs the first two (7/9 >= 0.7); so only ids 0 and 1 may appear.
	ln := func(p float64) float32 { return float32(math.Log(p)) }
	logits := []float32{ln(0.4), ln(0.3), ln(0.2), ln(0.1)}
	s, err := New(Options{Temperature: 1, TopK: 3, TopP: 0.7, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int32]int{}
	for range 2000 {
		id, err := s.Sample(slices.Clone(logits))
		if err != nil {
			t.Fatal(err)
		}
		seen[id]++
	}
	if seen[2]+seen[3] != 0 || seen[0] == 0 || seen[1] == 0 {
		t.Fatalf("counts %v: want only ids 0 and 1", seen)
	}
}

func TestSampleSeedDeterminism(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	logits := make([]float32, 300)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 2)
	}
	run := func(seed uint64) []int32 {
		s, err := New(Options{Temperature: 0.9, TopK: 50, TopP: 0.95, MinP: 0.01, RepeatPenalty: 1.1, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		var out []int32
		for range 64 {
			id, err := s.Sample(slices.Clone(logits))
			if err != nil {
				t.Fatal(err)
			}
			s.Accept(id)
			out = append(out, id)
		}
		return out
	}
	a, b, c := run(42), run(42), run(43)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed gave different tokens:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Fatalf("seeds 42 and 43 gave the same 64 tokens: %v", a)
	}
}

func TestSampleResetReplays(t *testing.T) {
	logits := []float32{1, 1.5, 0.5, 2, 0}
	s, err := New(Options{Temperature: 1, RepeatPenalty: 1.3, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	play := func() []int32 {
		var out []int32
		for range 30 {
			id, err := s.Sample(slices.Clone(logits))
			if err != nil {
				t.Fatal(err)
			}
			s.Accept(id)
			out = append(out, id)
		}
		return out
	}
	first := play()
	s.Reset()
	if second := play(); !slices.Equal(first, second) {
		t.Fatalf("after Reset: %v, want %v", second, first)
	}
}

// chi2Quantile999 is the 99.9% quantile of the chi-square distribution by degrees of
// freedom (from standard tables).
var chi2Quantile999 = map[int]float64{1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32}

// TestSampleFollowsSoftmax draws many tokens and checks the counts against the softmax
// of logits/temperature over the tokens the truncation keeps, with Pearson's chi-square
// statistic. Seeds are fixed, so the statistics are too; the bound is the 99.9% quantile,
// which a correct sampler passes for almost every seed.
func TestSampleFollowsSoftmax(t *testing.T) {
	logits := []float32{1.0, 0.2, -0.5, 2.0, 0.0, 1.5, -1.0, 0.7}
	tests := []struct {
		name string
		opts Options
		keep []int // ids the truncation keeps, hand-derived from the logits' order
	}{
		{"temperature 0.7", Options{Temperature: 0.7, Seed: 2024}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{"temperature 1.3, top-k 3", Options{Temperature: 1.3, TopK: 3, Seed: 7}, []int{3, 5, 0}},
		// Softmax at temperature 1: 0.373, 0.226, 0.137, 0.102, ... for ids 3, 5, 0, 7, ...;
		// cumulative 0.373, 0.600, 0.737, 0.839: top-p 0.8 keeps four.
		{"temperature 1, top-p 0.8", Options{Temperature: 1, TopP: 0.8, Seed: 12}, []int{3, 5, 0, 7}},
		// p(max)=e^2/Z; min-p 0.2 keeps logits >= 2 + ln 0.2 = 0.391: ids 3, 5, 0, 7.
		{"temperature 0.5, min-p 0.2", Options{Temperature: 0.5, MinP: 0.2, Seed: 8}, []int{3, 5, 0, 7}},
	}
	const draws = 40000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			counts := make([]int, len(logits))
			for range draws {
				id, err := s.Sample(slices.Clone(logits))
				if err != nil {
					t.Fatal(err)
				}
				counts[id]++
			}
			temp := float64(tt.opts.Temperature)
			var z float64
			for _, id := range tt.keep {
				z += math.Exp(float64(logits[id]) / temp)
			}
			var chi2 float64
			kept := 0
			for _, id := range tt.keep {
				want := draws * math.Exp(float64(logits[id])/temp) / z
				d := float64(counts[id]) - want
				chi2 += d * d / want
				kept += counts[id]
			}
			if kept != draws {
				t.Fatalf("%d of %d draws outside the kept set %v: counts %v", draws-kept, draws, tt.keep, counts)
			}
			bound := chi2Quantile999[len(tt.keep)-1]
			t.Logf("counts %v, chi-square %.2f (bound %.2f)", counts, chi2, bound)
			if chi2 > bound {
				t.Fatalf("chi-square %.2f > %.2f: counts %v do not follow softmax", chi2, bound, counts)
			}
		})
	}
}

func TestSampleNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	logits := make([]float32, 4096)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	work := make([]float32, len(logits))
	s, err := New(Options{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1.1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.Accept(1, 2, 3, 4)
	copy(work, logits)
	if _, err := s.Sample(work); err != nil { // sizes the buffers
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(50, func() {
		copy(work, logits)
		id, err := s.Sample(work)
		if err != nil {
			t.Fatal(err)
		}
		s.Accept(id)
	})
	if allocs != 0 {
		t.Fatalf("Sample allocates %v times per token, want 0", allocs)
	}
}

func BenchmarkSample(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	logits := make([]float32, 8192)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	work := make([]float32, len(logits))
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"greedy", Options{}},
		{"temp", Options{Temperature: 0.8}},
		{"topp", Options{Temperature: 0.8, TopP: 0.95}},
		{"llamacpp-defaults", Options{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				copy(work, logits)
				if _, err := s.Sample(work); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzSample feeds arbitrary logits (NaN and infinities included) and options to Sample:
// it must not panic, and must return either ErrNoCandidates or a token whose logit is
// not NaN or -Inf and, with top-k, one of the k best.
func FuzzSample(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 192, 127}, float32(0.8), 2, float32(0.9), float32(0.05), float32(1.1), uint64(1))
	f.Add([]byte{0, 0, 128, 255, 0, 0, 128, 127}, float32(0), 0, float32(0), float32(0), float32(0), uint64(2))
	f.Fuzz(func(t *testing.T, raw []byte, temp float32, topK int, topP, minP, penalty float32, seed uint64) {
		logits := make([]float32, len(raw)/4)
		for i := range logits {
			logits[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
		}
		opts := Options{Temperature: temp, TopK: topK, TopP: topP, MinP: minP, RepeatPenalty: penalty, Seed: seed}
		s, err := New(opts)
		if err != nil {
			if !errors.Is(err, ErrOptions) {
				t.Fatalf("New: %v", err)
			}
			return
		}
		s.Accept(0, 1, 2)
		work := slices.Clone(logits)
		id, err := s.Sample(work)
		if err != nil {
			if !errors.Is(err, ErrNoCandidates) {
				t.Fatalf("Sample: %v", err)
			}
			return
		}
		if id < 0 || int(id) >= len(logits) {
			t.Fatalf("id %d outside [0, %d)", id, len(logits))
		}
		l := work[id] // after the penalty
		if l != l || math.IsInf(float64(l), -1) {
			t.Fatalf("chose id %d with logit %v", id, l)
		}
		if topK > 0 && !opts.Greedy() {
			better := 0
			for _, x := range work {
				if x > l {
					better++
				}
			}
			if better >= topK {
				t.Fatalf("chose id %d (logit %v) with %d better tokens under top-k %d", id, l, better, topK)
			}
		}
	})
}
