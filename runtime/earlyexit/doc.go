// Package earlyexit speculates tokens from a model's early-layer hidden states, the
// SPEED paper's idea (Hooper et al., arXiv 2310.12072), in two forms:
//
//   - Drafter (standard models): after layer E, a Predictor maps the hidden state to
//     a predicted final hidden state, which goes through the final norm and LM head;
//     the drafted token then runs layers 0..E-1 only to draft the next one. It plugs into
//     package speculate, whose batched full-depth pass verifies the draft.
//   - Pipeline (parameter-shared models, whose layer i uses block i mod G): the token
//     in flight and the tokens speculated from its early exits run through the same
//     block in one batched step, so every weight read serves all of them; a
//     mis-speculation flushes the younger tokens (their cached keys and values are
//     overwritten later). This is the paper's pipelined form. A speculate.Drafter
//     (n-gram drafts) may extend each token the pipeline launches with a draft that
//     rides along and completes in the same step; a deeper exit that disagrees with a
//     speculated token replaces it at once, and drafted tokens go in only while their
//     chance of being confirmed pays for their rows by the step costs the pipeline
//     measures.
//
// Both are exact: every token they emit is the argmax of a full-depth pass computed as
// plain greedy decoding computes it (model.Options.Exact), so the output is plain greedy
// decoding's, token for token.
package earlyexit
