package decode

import (
	"context"
	"errors"
	"testing"

	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
)

// nopSpiller takes nothing: the validation tests never reach a spill.
type nopSpiller struct{}

func (nopSpiller) Spill(*model.Cache, int) error { return errors.New("not reached") }

// TestSpillOptions: a Spill that cannot run is refused with ErrOptions before anything
// runs.
func TestSpillOptions(t *testing.T) {
	e := syntheticEngine(t, modeltest.Spec{Seed: 5})
	prompt := e.Tokenizer.Encode("abc", true)
	prefix := cachePrefix(t, e, 20)
	for name, tc := range map[string]struct {
		spill  Spill
		prefix model.Prefix
	}{
		"no spiller": {Spill{After: 64, Block: 8}, prefix},
		"no prefix":  {Spill{To: nopSpiller{}, After: 64, Block: 8}, nil},
		"after":      {Spill{To: nopSpiller{}, After: MinSpillAfter - 1, Block: 8}, prefix},
		"block":      {Spill{To: nopSpiller{}, After: 64}, prefix},
	} {
		_, err := e.GenerateTokens(context.Background(), prompt, Options{MaxTokens: 4, Prefix: tc.prefix, Spill: &tc.spill})
		if !errors.Is(err, ErrOptions) {
			t.Errorf("%s: %v, want ErrOptions", name, err)
		}
	}
}
