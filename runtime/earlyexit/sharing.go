package earlyexit

import (
	"errors"
	"fmt"

	"squeeze/runtime/gguf"
	"squeeze/runtime/model"
)

// BlockShareKey is the GGUF metadata key that records a parameter-shared decoder's
// number of distinct blocks G (layer i uses block i mod G), as gocode-shared has it.
const BlockShareKey = "squeeze.block_share"

// ErrBlockShare means a model file's BlockShareKey disagrees with its weights.
var ErrBlockShare = errors.New("earlyexit: squeeze.block_share does not match the weights")

// BlockShare returns the number of distinct blocks of m, the model f holds: G < Layers
// for a parameter-shared decoder, Layers otherwise. The weights decide
// (model.BlockPeriod finds byte-identical layers); a BlockShareKey in f that claims a
// sharing the weights do not have is an error wrapping ErrBlockShare. f may be nil.
func BlockShare(f *gguf.File, m *model.Model) (int, error) {
	period := m.BlockPeriod()
	if f == nil || !f.Has(BlockShareKey) {
		return period, nil
	}
	g, err := f.Uint(BlockShareKey)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBlockShare, err)
	}
	layers := uint64(m.Config.Layers)
	// The weights may repeat with a shorter period than the file declares (a divisor of
	// it), never a longer one.
	if g == 0 || g > layers || layers%g != 0 || g%uint64(period) != 0 {
		return 0, fmt.Errorf("%w: %s = %d, but the %d layers repeat every %d", ErrBlockShare, BlockShareKey, g, layers, period)
	}
	return period, nil
}
