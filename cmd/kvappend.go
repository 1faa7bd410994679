package cmd

import (
	"squeeze/format"
	"squeeze/runtime/kvquant"
)

// valueTypes returns the datatypes of a's values per layer, with which ask and serve
// quantize the values of long answers on append (kvquant.Appender), or nil for an
// artifact stored in f16.
func valueTypes(a *format.Artifact) []kvquant.Datatype {
	if a.KV == nil {
		return nil
	}
	types := make([]kvquant.Datatype, len(a.KV.Layers))
	for l, layer := range a.KV.Layers {
		types[l] = layer.Value
	}
	return types
}
