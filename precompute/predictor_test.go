package precompute

import (
	"context"
	"path/filepath"
	"testing"

	"squeeze/format"
)

// TestPredictorInArtifact checks that precompute fits the early-exit predictor on the
// context and stores it, with a score for every candidate depth, and that NoPredictor
// leaves it out.
func TestPredictorInArtifact(t *testing.T) {
	modelPath, in := syntheticModel(t), corpus(t)
	for _, skip := range []bool{false, true} {
		opts := runOptions(modelPath, filepath.Join(t.TempDir(), "c.sqz"), in)
		opts.Squeeze.NoPredictor = skip
		a := runArtifact(t, opts)
		switch p := a.Predictor; {
		case skip && p != nil:
			t.Errorf("NoPredictor: the artifact has a predictor")
		case !skip && p == nil:
			t.Errorf("the artifact has no predictor")
		case !skip:
			if len(p.Scores) != a.Header.Model.Layers-1 || p.Layer < 1 || p.Layer >= a.Header.Model.Layers || p.Dim != a.Header.Model.Dim {
				t.Errorf("predictor of depth %d, width %d, scores %+v", p.Layer, p.Dim, p.Scores)
			}
		}
	}
}

// runArtifact runs precompute with opts and opens the artifact it writes; the artifact is
// closed when the test ends.
func runArtifact(t testing.TB, opts Options) *format.Artifact {
	t.Helper()
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	a, err := format.ReadArtifact(opts.Output)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}
