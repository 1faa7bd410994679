package calibrate

import (
	"context"
	"errors"
	"fmt"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
)

// Defaults of FisherOptions.
const (
	// DefaultWindow is the number of tokens scored together: long enough for the
	// gradients to see real long-range attention, short enough to bound memory (about
	// 85 MB of scratch for gocode-22m) and to keep attention's quadratic cost small.
	DefaultWindow = 1024
	// DefaultSink is the number of leading tokens (the attention sink, BOS) that begin
	// every window after the first.
	DefaultSink = 1
)

// FisherOptions tunes Fisher. The zero value is usable.
type FisherOptions struct {
	// Window is the number of tokens per window, sink included (0: DefaultWindow, or the
	// model's context length if shorter). It must exceed the sink.
	Window int
	// Sink is the number of tokens at the start of the text that begin every later window
	// (0: DefaultSink; negative: none).
	Sink int
	// Activations keeps each window's keys before RoPE and values in the Sensitivity (as
	// the windowed forward pass computed them), for fitting datatypes on a calibration text
	// that is not the context.
	Activations bool
	// Progress, if set, is called after every window with the number of tokens done and
	// the total.
	Progress func(done, total int)
}

// Sensitivity holds KVQuant's sensitivities of a text: per layer and per element, the
// Fisher information of the keys before RoPE and of the values, estimated as in the paper
// (Appendix D) by the squared gradient of the text's next-token loss with respect to the
// activation.
type Sensitivity struct {
	// Layers, Tokens, KVHeads and HeadDim give the shapes: every slice below has Layers
	// entries of Tokens x KVDim values, token-major, heads consecutive within a token, as
	// model.LayerState's KeysPreRoPE and Values.
	Layers, Tokens, KVHeads, HeadDim int
	// Keys and Values are the squared gradients.
	Keys, Values [][]float32
	// KeysPreRoPE and ValueActs are the activations themselves, with
	// FisherOptions.Activations (nil otherwise).
	KeysPreRoPE, ValueActs [][]float32
	// Loss is the text's mean next-token cross-entropy (nats) under windowing.
	Loss float64
	// Windows is the number of windows scored.
	Windows int
}

// KVDim is the number of key (or value) channels of a token: KVHeads x HeadDim.
func (s *Sensitivity) KVDim() int { return s.KVHeads * s.HeadDim }

// Fisher computes the sensitivities of tokens, the calibration text: by default the fixed
// context itself, the data being quantized, so that every context element gets its own
// weight; with another text, use ChannelMeans (or fit on that text's own activations).
//
// The loss is the mean cross-entropy of predicting each token from the ones before it.
// Memory stays bounded for long texts by scoring the text in windows of opt.Window tokens,
// each its own sequence at positions from 0: window 0 is the text's first Window tokens,
// and every later window is the text's first Sink tokens (the attention sink, BOS when the
// text starts with it) followed by the next Window−Sink tokens. The approximation is that
// a token's gradient counts only the losses of later tokens in its window and its
// activations see only its window: KVQuant calibrates on independent 2048-token samples in
// just this way, and the sink makes every window start as a sequence does, so the first
// tokens of later windows do not become spurious attention sinks with outsized
// sensitivities. (A frozen prefix of the earlier windows' keys and values would make
// attention cost quadratic in the text's length and still drop the cross-window terms of
// the gradient.) The sink's copies in later windows get no gradient and predict nothing;
// every other token is predicted once, and the loss is the mean over those predictions, so
// windows of any length weigh alike per token.
//
// Fisher checks ctx between windows and returns ctx.Err() when it is cancelled.
func Fisher(ctx context.Context, m *model.Model, pool *kernels.Pool, tokens []int32, opt FisherOptions) (*Sensitivity, error) {
	if m == nil || pool == nil {
		return nil, errors.New("calibrate: Fisher needs a model and a pool")
	}
	n := len(tokens)
	if n < 2 {
		return nil, fmt.Errorf("calibrate: Fisher of %d tokens, want at least 2", n)
	}
	window, sink := opt.Window, opt.Sink
	if window == 0 {
		window = max(2, min(DefaultWindow, m.Config.ContextLength))
	}
	switch {
	case sink == 0:
		sink = DefaultSink
	case sink < 0:
		sink = 0
	}
	if window < 2 || window <= sink {
		return nil, fmt.Errorf("calibrate: Fisher window of %d tokens with a sink of %d, want a window of at least 2 longer than the sink", window, sink)
	}
	window = min(window, n)
	sink = min(sink, window-1)

	cfg := &m.Config
	kvDim := cfg.KVDim()
	s := &Sensitivity{Layers: cfg.Layers, Tokens: n, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim}
	s.Keys, s.Values = make([][]float32, cfg.Layers), make([][]float32, cfg.Layers)
	for l := range cfg.Layers {
		s.Keys[l], s.Values[l] = make([]float32, n*kvDim), make([]float32, n*kvDim)
	}
	g, err := m.NewKVGrad(window)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	dk, dv := make([][]float32, cfg.Layers), make([][]float32, cfg.Layers)
	for l := range cfg.Layers {
		dk[l], dv[l] = make([]float32, window*kvDim), make([]float32, window*kvDim)
	}

	// The windows: [0, window), then [start, start+window−sink) behind the sink.
	type span struct{ start, end int }
	spans := []span{{0, window}}
	for start := window; start < n; start += window - sink {
		spans = append(spans, span{start, min(n, start+window-sink)})
	}
	// Predictions: every token after the first, except each later window's first token
	// (which only the sink would predict).
	predicted := n - 1 - (len(spans) - 1)
	if predicted < 1 {
		predicted = 1
	}
	mean := float32(1 / float64(predicted))

	if opt.Activations {
		s.KeysPreRoPE, s.ValueActs = make([][]float32, cfg.Layers), make([][]float32, cfg.Layers)
		for l := range cfg.Layers {
			s.KeysPreRoPE[l], s.ValueActs[l] = make([]float32, n*kvDim), make([]float32, n*kvDim)
		}
	}
	buf := make([]int32, 0, window)
	weights := make([]float32, 0, window)
	for w, sp := range spans {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// The window's leading tokens before the span's own: the sink copy or, without a
		// sink, the token before a last span of one token (so that it is still run).
		var before []int32
		switch {
		case w == 0:
		case sink > 0:
			before = tokens[:sink]
		case sp.end-sp.start == 1:
			before = tokens[sp.start-1 : sp.start]
		}
		lead := len(before)
		buf, weights = append(buf[:0], before...), weights[:0]
		buf = append(buf, tokens[sp.start:sp.end]...)
		for i := range len(buf) - 1 {
			wt := mean
			if i < lead {
				wt = 0
			}
			weights = append(weights, wt)
		}
		if opt.Activations {
			g.Observe = func(l int, keys, values []float32) {
				copy(s.KeysPreRoPE[l][sp.start*kvDim:sp.end*kvDim], keys[lead*kvDim:])
				copy(s.ValueActs[l][sp.start*kvDim:sp.end*kvDim], values[lead*kvDim:])
			}
		}
		loss, err := g.Run(pool, buf, weights, dk, dv)
		if err != nil {
			return nil, fmt.Errorf("calibrate: window %d: %w", w, err)
		}
		s.Loss += loss
		for l := range cfg.Layers {
			square(s.Keys[l][sp.start*kvDim:sp.end*kvDim], dk[l][lead*kvDim:len(buf)*kvDim])
			square(s.Values[l][sp.start*kvDim:sp.end*kvDim], dv[l][lead*kvDim:len(buf)*kvDim])
		}
		s.Windows++
		if opt.Progress != nil {
			opt.Progress(sp.end, n)
		}
	}
	return s, nil
}

// square sets dst[i] = src[i]².
func square(dst, src []float32) {
	for i, v := range src[:len(dst)] {
		dst[i] = v * v
	}
}

// ChannelMeans returns, per layer, the mean over the tokens of every key channel's and
// value channel's sensitivity (KVDim values each): the aggregate form to weight another
// text's elements with (a Sample's ChannelFisher), when the calibration text is not the
// context. The first skip tokens (an attention sink kept in full precision) are left out.
func (s *Sensitivity) ChannelMeans(skip int) (keys, values [][]float32) {
	kvDim := s.KVDim()
	skip = max(0, min(skip, s.Tokens-1))
	mean := func(x []float32) []float32 {
		sum := make([]float64, kvDim)
		for t := skip; t < s.Tokens; t++ {
			for c, v := range x[t*kvDim : (t+1)*kvDim] {
				sum[c] += float64(v)
			}
		}
		out := make([]float32, kvDim)
		for c, v := range sum {
			out[c] = float32(v / float64(s.Tokens-skip))
		}
		return out
	}
	keys, values = make([][]float32, s.Layers), make([][]float32, s.Layers)
	for l := range s.Layers {
		keys[l], values[l] = mean(s.Keys[l]), mean(s.Values[l])
	}
	return keys, values
}

// Broadcast returns per-element sensitivities of layer for a context of tokens tokens
// that is not the calibration text (--calib): s's per-channel means (ChannelMeans, with
// the first skip tokens of the calibration text left out) repeated on every token, tokens
// x KVDim each, token-major, the layout of s.Keys and s.Values (what precompute's
// KVOptions.Sensitivity returns). When the calibration text is the context, use
// s.Keys[layer] and s.Values[layer] themselves.
func (s *Sensitivity) Broadcast(layer, tokens, skip int) (keys, values []float32) {
	mk, mv := s.ChannelMeans(skip)
	kvDim := s.KVDim()
	keys, values = make([]float32, tokens*kvDim), make([]float32, tokens*kvDim)
	for t := range tokens {
		copy(keys[t*kvDim:], mk[layer])
		copy(values[t*kvDim:], mv[layer])
	}
	return keys, values
}
