package speculate_test

import (
	"context"
	"os"
	"sync"
	"testing"

	"squeeze/precompute"
	"squeeze/runtime/earlyexit"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
	"squeeze/runtime/speculate"
	"squeeze/runtime/testfiles"
	"squeeze/runtime/tokenizer"
)

// contextLen is the fixed context of the gocode-22m measurements: C = 4096 tokens.
const contextLen = 4096

// gocodeFixture is gocode-22m with dev.txt's tokens and the squeezed context of their
// first contextLen tokens, built once per test binary.
type gocodeFixture struct {
	m      *model.Model
	tok    *tokenizer.Tokenizer
	tokens []int32 // dev.txt, BOS first
	ctx    *sparse.Context
	pred   *earlyexit.Predictor // the early-exit predictor fitted on the context
}

var (
	fixOnce sync.Once
	fix     *gocodeFixture
	fixErr  error
)

// gocode returns the fixture; the test skips when ../shared is absent.
func gocode(tb testing.TB) *gocodeFixture {
	tb.Helper()
	path := testfiles.Shared(tb, "models", "gocode-22m", "gocode-22m.gguf")
	dev := testfiles.Shared(tb, "eval", "dev.txt")
	fixOnce.Do(func() { fix, fixErr = loadGocode(path, dev) })
	if fixErr != nil {
		tb.Fatal(fixErr)
	}
	return fix
}

func loadGocode(path, dev string) (*gocodeFixture, error) {
	f, err := gguf.Open(path) // kept open for the test binary's life: the weights live in it
	if err != nil {
		return nil, err
	}
	m, err := model.Load(f)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		return nil, err
	}
	text, err := os.ReadFile(dev)
	if err != nil {
		return nil, err
	}
	tokens := tok.Encode(string(text), true)
	pool := kernels.NewPool(0)
	defer pool.Close()
	sq, err := precompute.Squeeze(context.Background(), m, f, pool, tokens[:contextLen],
		precompute.SqueezeOptions{Budget: 0.125, Cache: model.CacheF16})
	if err != nil {
		return nil, err
	}
	return &gocodeFixture{m: m, tok: tok, tokens: tokens, ctx: sq.Context, pred: sq.Predictor}, nil
}

// drafters returns the draft sources squeeze ask would use: n-grams of the context
// (indexed once) and, if the fixture has a predictor, early-layer drafts.
func (g *gocodeFixture) drafters() []speculate.Drafter {
	ds := []speculate.Drafter{speculate.NewNGram(g.ctx.Tokens, 0, 0)}
	if g.pred != nil {
		ds = append(ds, earlyexit.NewDrafter(g.pred))
	}
	return ds
}

// session attends to the fixture's context with the given budget (1: dense).
func (g *gocodeFixture) session(tb testing.TB, pool *kernels.Pool, budget float64) *sparse.Session {
	tb.Helper()
	s, err := sparse.NewSession(g.ctx, g.m, pool, budget)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// prompt returns the i-th code continuation prompt: n tokens of dev.txt after the
// context, prompts 200 tokens apart.
func (g *gocodeFixture) prompt(i, n int) []int32 {
	at := contextLen + i*200
	return g.tokens[at : at+n]
}
