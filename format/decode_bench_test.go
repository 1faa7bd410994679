package format

import (
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/sparse"
	"squeeze/runtime/testfiles"
)

// The inputs of BenchmarkArtifactDecode, after -args on the go test command line.
var (
	decodeArtifacts = flag.String("decode.artifacts", "", "BenchmarkArtifactDecode: comma-separated artifacts of one context, the first the baseline")
	decodeModel     = flag.String("decode.model", "", "BenchmarkArtifactDecode: the artifacts' GGUF model (default: the shared gocode-22m)")
	decodeTokens    = flag.Int("decode.tokens", 384, "BenchmarkArtifactDecode: tokens decoded from each artifact per iteration")
)

// decodeBlock is the number of steps BenchmarkArtifactDecode takes from one artifact
// before the next one's turn: long enough for each to bring its own rows into the caches,
// short enough that the machine's load drifts alike for all.
const decodeBlock = 16

// BenchmarkArtifactDecode decodes from several artifacts of the same context in one
// process, in turns, dense and at budget 0.125: what issue 4's decode speed line
// compares (f16 against nuq3-1% storage at C = 32,768, "in the same run"). The query is
// the context's last 64 tokens; the tokens decoded after it are the first artifact's
// greedy ones, fed to every artifact, so each decodes the same sequence. Each
// iteration decodes them all from every artifact, decodeBlock steps at a time with the
// artifacts taking turns (the first to go rotates). It reports each artifact's decode
// rate (NAME-tok/s), its realized budget, and its speed over the first's (NAME/FIRST,
// above 1: faster), NAME being the file's base name. Give the artifacts after -args:
//
//	go test ./format -run XXX -bench ArtifactDecode -benchtime 3x -args -decode.artifacts f16.sqz,nuq3.sqz
func BenchmarkArtifactDecode(b *testing.B) {
	if *decodeArtifacts == "" {
		b.Skip("no artifacts: pass -args -decode.artifacts A.sqz,B.sqz (two or more of one context)")
	}
	paths := strings.Split(*decodeArtifacts, ",")
	if len(paths) < 2 {
		b.Fatalf("-decode.artifacts %q: want two or more artifacts", *decodeArtifacts)
	}
	modelPath := *decodeModel
	if modelPath == "" {
		modelPath = testfiles.Shared(b, "models", "gocode-22m", "gocode-22m.gguf")
	}
	m, f, _ := testmodel.File(b, modelPath)
	fingerprint, err := ModelFingerprint(modelPath, f)
	if err != nil {
		b.Fatal(err)
	}
	arts := make([]*Artifact, len(paths))
	names := make([]string, len(paths))
	for i, p := range paths {
		if arts[i], err = ReadArtifact(p); err != nil {
			b.Fatal(err)
		}
		if err := CheckModel(arts[i], modelPath, fingerprint); err != nil {
			b.Fatal(err)
		}
		if !slices.Equal(arts[i].Context.Tokens, arts[0].Context.Tokens) {
			b.Fatalf("%s and %s hold different contexts", p, paths[0])
		}
		names[i] = strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
	}
	ctx := arts[0].Context.Tokens
	gen := *decodeTokens
	if len(ctx) < 2 || gen < 1 {
		b.Fatalf("a context of %d tokens and -decode.tokens %d: want at least 2 and 1", len(ctx), gen)
	}
	prompt := ctx[len(ctx)-min(64, len(ctx)-1):]
	pool := kernels.NewPool(2)
	defer pool.Close()
	logits := make([]float32, m.Config.Vocab)
	for _, budget := range []float64{1, 0.125} {
		b.Run(fmt.Sprintf("budget=%g", budget), func(b *testing.B) {
			sessions := make([]*sparse.Session, len(arts))
			caches := make([]*model.Cache, len(arts))
			// The first artifact prefills last, so that logits end as its own.
			for i := len(arts) - 1; i >= 0; i-- {
				if sessions[i], err = sparse.NewSession(arts[i].Context, m, pool, budget); err != nil {
					b.Fatal(err)
				}
				if caches[i], err = m.NewCache(len(prompt)+gen, model.CacheF16); err != nil {
					b.Fatal(err)
				}
				if err := m.Forward(pool, caches[i], prompt, logits, &model.Options{Prefix: sessions[i]}); err != nil {
					b.Fatal(err)
				}
			}
			tokens := make([]int32, gen)
			for j := range tokens {
				tokens[j] = int32(argmax(logits))
				if err := m.Forward(pool, caches[0], tokens[j:j+1], logits, &model.Options{Prefix: sessions[0]}); err != nil {
					b.Fatal(err)
				}
			}
			for _, s := range sessions {
				s.ResetStats()
			}
			spent := make([]time.Duration, len(arts))
			turn := 0
			for b.Loop() {
				for _, c := range caches {
					if err := c.Truncate(len(prompt)); err != nil {
						b.Fatal(err)
					}
				}
				for lo := 0; lo < gen; lo += decodeBlock {
					for k := range arts {
						i := (turn + k) % len(arts)
						t0 := time.Now()
						for j := lo; j < min(gen, lo+decodeBlock); j++ {
							if err := m.Forward(pool, caches[i], tokens[j:j+1], logits, &model.Options{Prefix: sessions[i]}); err != nil {
								b.Fatal(err)
							}
						}
						spent[i] += time.Since(t0)
					}
					turn++
				}
			}
			for i, name := range names {
				b.ReportMetric(float64(gen*b.N)/spent[i].Seconds(), name+"-tok/s")
				b.ReportMetric(sessions[i].Stats().RealizedBudget(), name+"-budget")
				if i > 0 {
					b.ReportMetric(float64(spent[0])/float64(spent[i]), name+"/"+names[0])
				}
			}
		})
	}
}

// argmax returns the index of the largest of x (the first of equals).
func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
