// Package speculate is speculative decoding for greedy generation: drafters propose
// the next few tokens cheaply, one batched forward pass of the model verifies them
// all, and the longest prefix of the draft that plain greedy decoding would also have
// produced is accepted, together with the token the model chose after it. The KV
// entries of rejected tokens are rolled back (model.Cache.Truncate). Every weight read
// of the batched pass serves all the draft's tokens, so on a machine whose decoding is
// bound by reading the weights, a pass of k tokens costs little more than a pass of
// one, and each accepted draft token saves most of a decoding step.
//
// The output is exactly that of plain greedy decoding: the verification pass computes
// every token's logits as a single-token decoding step would (model.Options.Exact), so
// speculation changes the speed, never the text.
//
// Draft sources implement Drafter (NGram: prompt lookup in the fixed context and the
// text so far; early-layer predictors live elsewhere and plug in through Observer). A
// Policy picks, before each pass, the source and the draft length from running
// acceptance statistics, and falls back to plain decoding when no source pays.
// Package decode runs the loop: decode.Options.Speculate takes a Policy.
package speculate
