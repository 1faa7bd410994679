// Package sample picks the next token from a model's logits.
//
// A Sampler applies, in llama.cpp's default order: the repetition penalty over a window of
// recently accepted tokens, top-k, top-p (nucleus), min-p, and finally the temperature,
// then draws a token from the softmax of what is left with a seeded PCG generator
// (math/rand/v2). Temperature 0 is greedy decoding: the penalised argmax, no randomness.
// Truncation (top-k, top-p, min-p) therefore sees the model's own distribution, and the
// temperature only reshapes the probabilities among the survivors.
//
// The same Options and seed over the same logits give the same tokens. A Sampler owns
// reusable buffers sized to the vocabulary, so sampling does not allocate per token.
package sample
