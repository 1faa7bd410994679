// Package decode generates text with a model: it prefills the prompt in batched forward
// passes, then samples and feeds back one token at a time, streaming text as it is
// completed. With Options.Speculate (greedy sampling only), a pass may instead verify
// a draft of several tokens (package speculate) and commit the part greedy decoding
// would also have produced; the tokens are the same, only fewer passes run. With
// Options.Pipeline (greedy, no repetition penalty), a Stepper chooses every token after
// the first: earlyexit's pipelined form on a parameter-shared model, again greedy
// decoding's tokens. With Options.Spill, a long generation moves its oldest tokens out of
// the KV cache into the Prefix, a block at a time (kvquant.Appender quantizes their
// values as it takes them), at the same tokens whether it decodes plainly or
// speculatively, so the cache stays small and the tokens are still greedy decoding's.
//
// Generation stops at the first of: an end-of-generation token (EOS, <|eot_id|>, ...), a
// stop string, the token limit, a full KV cache, or the cancellation of the context. The
// Result says which, with the generated ids, the text, and the prefill and decode timings.
//
// Text reaches the caller's callback in pieces that are final: a token that ends inside a
// UTF-8 sequence is held until the sequence completes, and text that might be the
// beginning of a stop string is held until it is known not to be. A stop string itself is
// never emitted.
package decode
