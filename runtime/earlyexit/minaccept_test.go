package earlyexit

import (
	"fmt"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/speculate"
)

// TestPipelineMinAccept checks PipelineOptions.MinAccept on a random-weight shared
// model (whose early exits are poor guesses): the tokens stay plain greedy decoding's
// at every threshold, a threshold no guess reaches leaves only the probes (a guess or
// draft every ProbeTokens tokens), and 0 speculates at every step as before.
func TestPipelineMinAccept(t *testing.T) {
	s := modeltest.Spec{Layers: 6, Dim: 64, FFN: 96, Heads: 4, KVHeads: 2, Vocab: 64, Context: 512, Weights: gguf.TypeF16, Seed: 11}
	m, _ := sharedModel(t, s, 2)
	prompt := modeltest.Tokens(20, s.Vocab, 3)
	p := kernels.NewPool(2)
	defer p.Close()
	const n = 80
	want := plainGreedy(t, m, p, nil, prompt, n)
	launched := map[float64]int{}
	for _, minAccept := range []float64{0, 0.5, 1.01} {
		t.Run(fmt.Sprintf("min=%g", minAccept), func(t *testing.T) {
			o := PipelineOptions{MinAccept: minAccept, Drafter: speculate.NewNGram(prompt, 1, 3)}
			got, st := pipelined(t, m, p, nil, prompt, n, o)
			if !slices.Equal(got, want) {
				t.Fatalf("pipelined %v\nplain     %v", got, want)
			}
			t.Logf("%+v", st)
			launched[minAccept] = st.Launched + st.Drafted
			if minAccept > 1 {
				// Only probes: at most one guess and one draft (an n-gram's, trimmed by its
				// confidences) per ProbeTokens tokens.
				if most := (n/ProbeTokens + 1) * (1 + DefaultTrimmedDraft); st.Launched == 0 || st.Launched+st.Drafted > most {
					t.Errorf("threshold above 1: %d guesses and %d drafts in %d tokens, want probes only (1 to %d)", st.Launched, st.Drafted, n, most)
				}
			}
		})
	}
	if launched[1.01] >= launched[0] {
		t.Errorf("speculated tokens: %d with an unreachable threshold, %d without one", launched[1.01], launched[0])
	}
}
