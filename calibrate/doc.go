// Package calibrate fits what the artifact needs beyond the raw KV cache: KVQuant's
// per-layer non-uniform datatypes by Fisher-weighted 1-D k-means over the context's
// normalized keys and values (with the sensitivities from a backward pass through the
// model), and the early-exit predictor that SPEED drafts from.
//
// It sits between precompute and the runtime: it reads activations and models from
// runtime packages and returns plain values for precompute to store; it writes nothing to
// a terminal and takes a context.Context for long work.
package calibrate
