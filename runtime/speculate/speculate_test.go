package speculate

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestParseMode(t *testing.T) {
	for i, name := range Modes {
		m, err := ParseMode(name)
		if err != nil || m != Mode(i) || m.String() != name {
			t.Errorf("ParseMode(%q) = %v, %v", name, m, err)
		}
	}
	if _, err := ParseMode("fast"); !errors.Is(err, ErrMode) {
		t.Errorf("ParseMode(fast) error %v, want ErrMode", err)
	}
	tests := []struct {
		mode  Mode
		name  string
		allow bool
	}{
		{ModeOff, "ngram", false}, {ModeAuto, "ngram", true}, {ModeAuto, "early", true},
		{ModeNGram, "ngram", true}, {ModeNGram, "early", false}, {ModeEarly, "early", true},
	}
	for _, tc := range tests {
		if got := tc.mode.Allows(tc.name); got != tc.allow {
			t.Errorf("%v.Allows(%q) = %v", tc.mode, tc.name, got)
		}
	}
}

// naiveLookup is the reference of NGram.Draft: the longest suffix of seq (maxN down to
// minN tokens) with an earlier occurrence; its latest occurrences (in seq, ending before
// seq's last token, latest first, then in ctx), MaxOccurrences at most; then, token by
// token, the continuation with the most votes among the occurrences that agree with the
// draft so far, a tie going to the one whose first voter comes first.
func naiveLookup(ctx, seq []int32, minN, maxN, limit int) []int32 {
	for n := min(maxN, len(seq)); n >= minN; n-- {
		key := seq[len(seq)-n:]
		type occ struct {
			s []int32
			p int
		}
		var found []occ
		for _, src := range [][]int32{seq, ctx} {
			for end := len(src) - 1; end >= n && len(found) < MaxOccurrences; end-- {
				if slices.Equal(src[end-n:end], key) {
					found = append(found, occ{src, end})
				}
			}
		}
		if len(found) == 0 {
			continue
		}
		var draft []int32
		for j := 0; j < limit; j++ {
			votes := map[int32]int{}
			var order []int32
			for _, o := range found {
				if o.p+j < len(o.s) {
					t := o.s[o.p+j]
					if votes[t] == 0 {
						order = append(order, t)
					}
					votes[t]++
				}
			}
			if len(order) == 0 {
				break
			}
			best := order[0]
			for _, t := range order {
				if votes[t] > votes[best] {
					best = t
				}
			}
			draft = append(draft, best)
			kept := found[:0]
			for _, o := range found {
				if o.p+j < len(o.s) && o.s[o.p+j] == best {
					kept = append(kept, o)
				}
			}
			found = kept
		}
		return draft
	}
	return nil
}

// TestNGramMatchesNaive compares NGram's drafts with a brute-force search, on random
// sequences over a small alphabet (many repeats) that grow token by token.
func TestNGramMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		ctx := make([]int32, 200)
		for i := range ctx {
			ctx[i] = int32(r.IntN(6))
		}
		minN, maxN := 1+trial%2, 2+trial%3
		g := NewNGram(ctx, minN, maxN)
		seq := []int32{int32(r.IntN(6))}
		g.Reset(nil, seq)
		for len(seq) < 120 {
			limit := 1 + r.IntN(6)
			got := g.Draft(nil, seq, limit)
			want := naiveLookup(ctx, seq, minN, maxN, limit)
			if !slices.Equal(got, want) {
				t.Fatalf("trial %d: Draft after %v = %v, want %v", trial, seq, got, want)
			}
			seq = append(seq, int32(r.IntN(6)))
		}
		// A new generation forgets the old sequence.
		g.Reset(nil, seq[:1])
		if got, want := g.Draft(nil, seq[:2], 4), naiveLookup(ctx, seq[:2], minN, maxN, 4); !slices.Equal(got, want) {
			t.Fatalf("trial %d after Reset: %v, want %v", trial, got, want)
		}
	}
}

func TestNGramCopiesContext(t *testing.T) {
	ctx := []int32{10, 11, 12, 13, 14, 15, 16, 17}
	g := NewNGram(ctx, 0, 0)
	g.Reset(nil, []int32{1, 12, 13})
	if got := g.Draft(nil, []int32{1, 12, 13}, 3); !slices.Equal(got, []int32{14, 15, 16}) {
		t.Errorf("draft %v, want 14 15 16", got)
	}
	if got := g.Draft(nil, []int32{1, 12, 13, 99}, 3); len(got) != 0 {
		t.Errorf("draft %v after an unseen token, want none", got)
	}
	// The sequence's own occurrence wins over the context's.
	seq := []int32{1, 12, 13, 99, 5, 12, 13}
	if got := g.Draft(nil, seq, 2); !slices.Equal(got, []int32{99, 5}) {
		t.Errorf("draft %v, want the sequence's 99 5", got)
	}
	if got := g.Clone().Draft([]int32{7}, []int32{12, 13}, 2); !slices.Equal(got, []int32{7, 14, 15}) {
		t.Errorf("clone's draft appended %v, want 7 14 15", got)
	}
}

// fixedDrafter drafts the same tokens every time.
type fixedDrafter struct {
	name  string
	draft []int32
	cost  float64
}

func (d *fixedDrafter) Name() string               { return d.name }
func (d *fixedDrafter) Reset(_ *Target, _ []int32) {}
func (d *fixedDrafter) DraftCost(k int) float64    { return d.cost * float64(k) }
func (d *fixedDrafter) Draft(dst, _ []int32, n int) []int32 {
	return append(dst, d.draft[:min(n, len(d.draft))]...)
}

// TestPolicyAdapts feeds a policy outcomes and checks its choices: long drafts for a
// source whose drafts are accepted, none (but periodic probes) for one whose drafts are
// rejected, the cheaper of two sources, and the counts.
func TestPolicyAdapts(t *testing.T) {
	good := &fixedDrafter{name: "ngram", draft: []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
	p := NewPolicy(ModeAuto, []Drafter{good}, PolicyOptions{MaxDraft: 8, RowCost: 0.1})
	p.Reset(nil, nil)
	for range 20 {
		d, src := p.Draft(nil, []int32{0}, 100)
		p.Verified(src, len(d), len(d), time.Millisecond)
	}
	if d, _ := p.Draft(nil, []int32{0}, 100); len(d) != 8 {
		t.Errorf("always accepted: draft of %d tokens, want MaxDraft 8", len(d))
	}
	if d, _ := p.Draft(nil, []int32{0}, 3); len(d) != 3 {
		t.Errorf("room 3: draft of %d tokens", len(d))
	}
	st := p.Stats()
	if st.Verifications != 20 || st.Accepted != st.Drafted || st.Sources[0].Name != "ngram" || st.TokensPerVerification() <= 1 {
		t.Errorf("stats %+v", st)
	}

	bad := &fixedDrafter{name: "ngram", draft: []int32{1, 2, 3}}
	p = NewPolicy(ModeNGram, []Drafter{bad}, PolicyOptions{Probe: 4})
	p.Reset(nil, nil)
	drafts := 0
	for range 40 {
		d, src := p.Draft(nil, []int32{0}, 100)
		if src < 0 {
			p.Plain(time.Millisecond)
			continue
		}
		drafts++
		p.Verified(src, len(d), 0, 2*time.Millisecond)
	}
	// Probes after 4 passes, then 8 and 16 (the interval doubles as they fail).
	if drafts < 2 || drafts > 5 {
		t.Errorf("never accepted: %d drafts in 40 passes, want 3 probes or so", drafts)
	}
	if p.Stats().Passes != 40 || p.Stats().AcceptanceRate() != 0 {
		t.Errorf("stats %+v", p.Stats())
	}

	cheap := &fixedDrafter{name: "ngram", draft: []int32{1, 2, 3, 4}}
	dear := &fixedDrafter{name: "early", draft: []int32{1, 2, 3, 4}, cost: 0.5}
	p = NewPolicy(ModeAuto, []Drafter{dear, cheap}, PolicyOptions{})
	p.Reset(nil, nil)
	if _, src := p.Draft(nil, []int32{0}, 100); src != 1 {
		t.Errorf("equal acceptance: drafted from source %d, want the cheap one (1)", src)
	}
	if NewPolicy(ModeOff, []Drafter{cheap}, PolicyOptions{}).Active() {
		t.Error("ModeOff policy is active")
	}
}

// confidentDrafter drafts fixed tokens with a fixed confidence per token.
type confidentDrafter struct {
	fixedDrafter
	conf []float64
}

func (d *confidentDrafter) Confidence() []float64 { return d.conf }

// TestPolicyConfidence checks that a Confident drafter's drafts are trimmed to what their
// own confidences are worth, whatever the source's record.
func TestPolicyConfidence(t *testing.T) {
	d := &confidentDrafter{fixedDrafter: fixedDrafter{name: "ngram", draft: []int32{1, 2, 3, 4, 5, 6, 7, 8}}}
	p := NewPolicy(ModeNGram, []Drafter{d}, PolicyOptions{RowCost: 0.1, Probe: -1})
	p.Reset(nil, nil)
	for _, tc := range []struct {
		conf   []float64
		lo, hi int
	}{
		{[]float64{0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05}, 0, 0},
		{[]float64{0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, 1, 3},
		{[]float64{0.97, 0.97, 0.97, 0.97, 0.97, 0.97, 0.97, 0.97}, 7, 8},
		// Confident at first, then not: the draft stops where confidence drops.
		{[]float64{0.97, 0.97, 0.97, 0.05, 0.97, 0.97, 0.97, 0.97}, 3, 3},
		// Unsure of the first token, sure of the rest: long enough to pay for it.
		{[]float64{0.6, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99}, 7, 8},
	} {
		d.conf = tc.conf
		got, _ := p.Draft(nil, []int32{0}, 100)
		if len(got) < tc.lo || len(got) > tc.hi {
			t.Errorf("confidence %v: draft of %d tokens, want %d to %d", tc.conf, len(got), tc.lo, tc.hi)
		}
	}
}

// TestNGramConfidence checks that the confidence of a drafted token grows with the match
// behind it (the n-gram extended backwards, then the drafted tokens before it) and that
// rejections lower the confidence of the statistics cell that drafted, and only of it.
func TestNGramConfidence(t *testing.T) {
	ctx := []int32{1, 2, 3, 4, 5, 6, 1, 2, 9, 9, 40, 41, 42, 43, 44}
	g := NewNGram(ctx, 1, 3)
	g.Reset(nil, nil)
	if d := g.Draft(nil, []int32{7, 2, 3}, 4); !slices.Equal(d, []int32{4, 5, 6, 1}) {
		t.Fatalf("draft %v, want 4 5 6 1", d)
	}
	conf := slices.Clone(g.Confidence())
	if len(conf) != 4 || !(conf[0] < conf[1] && conf[1] < conf[2] && conf[2] < conf[3]) {
		t.Fatalf("confidences %v: want 4, growing with the match", conf)
	}
	// A longer match behind the same tokens: more confident.
	g.Draft(nil, []int32{1, 2, 3}, 4)
	if long := g.Confidence(); long[0] <= conf[0] {
		t.Errorf("3-token match: confidence %v, 2-token match's %v", long, conf)
	}
	for range 5 {
		g.Draft(nil, []int32{7, 2, 3}, 4)
		g.Verified(4, 0)
	}
	after := g.Confidence()
	g.Draft(nil, []int32{7, 2, 3}, 4)
	if after = g.Confidence(); after[0] >= conf[0]/2 || after[1] != conf[1] {
		t.Errorf("after 5 rejections of the first token: confidences %v, were %v", after, conf)
	}
	// Accepted tokens raise their cells' confidence.
	g.Draft(nil, []int32{7, 2, 3}, 4)
	g.Verified(4, 4)
	g.Draft(nil, []int32{7, 2, 3}, 4)
	if up := g.Confidence(); up[3] <= conf[3] {
		t.Errorf("after an accepted draft: confidences %v, were %v", up, conf)
	}
	if d := g.Draft(nil, []int32{8, 9, 40}, 2); !slices.Equal(d, []int32{41, 42}) || len(g.Confidence()) != 2 {
		t.Errorf("draft %v with confidences %v, want 41 42 and two", d, g.Confidence())
	}
}
