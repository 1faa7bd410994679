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
		out := filepath.Join(t.TempDir(), "c.sqz")
		opts := runOptions(modelPath, out, in)
		opts.Squeeze.NoPredictor = skip
		if _, err := Run(context.Background(), opts); err != nil {
			t.Fatal(err)
		}
		a, err := format.ReadArtifact(out)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
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
