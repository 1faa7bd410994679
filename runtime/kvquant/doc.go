// Package kvquant stores a fixed context's keys and values in 2 to 4 bits per element, as
// KVQuant does (Hooper et al., arXiv 2401.18079), and attends straight from that storage.
//
// # Datatypes and normalization
//
// A Datatype is 2^b signposts in [−1, 1] (b = 2, 3 or 4): uniform integer (Uniform),
// NormalFloat (NormalFloat) or fitted per layer by sensitivity-weighted 1-D k-means over
// normalized values (package calibrate). Each vector is normalized by its Range before it
// is rounded to a signpost: u = (x − Mid)/Half. Keys get one Range per channel
// over the context's tokens (pre-RoPE keys have fixed outlier channels); values one per
// token (keys may take one per token too, an ablation: they are then read row by row,
// without the grouped key kernels). Ranges computes the ranges from the data after
// cutting off the outliers, a fraction of the values at each end of every vector, which
// are kept exactly (in half precision) beside the dense codes: dense-and-sparse
// quantization. Q-Norm (Datatype.WithQNorm) shifts the decoded levels to the data's mean
// and spread.
//
// Rounding each value to its nearest signpost makes each value's own error small; what
// attention sees is a key's dot products with queries and a value's with the output
// projection's rows. Given the second moment of those vectors (a Moment, Params.Moment),
// Quantize instead picks, for each value, one of the two signposts around it so that
// the row's error e, rotated to the key's position, has a small eᵀMe: a few passes of
// coordinate descent from the nearest codes, each change kept only if it lowers that
// error. The stored form is the same either way.
//
// # Storage
//
// Rows (Quantize) holds one (layer, KV head)'s keys or values: the b-bit codes of each
// row packed little-endian (Pack), the ranges, and the outliers as (index, half float)
// pairs sorted by element, in blocks of rows with 16-bit offsets. In an artifact
// (store.go) the per-token ranges take two bytes a row on a fixed grid
// (EncodeTokenRanges) and the outliers' places one byte each as gaps (EncodeOutliers);
// both are decoded at load. Keys are stored before rotary position embedding (RoPE), with
// each row's position; a RoPE table rotates them when they are read (its angles are
// composed from two small tables, one for multiples of 64 positions and one for the
// remainder, so it stays in cache at any context length). Joined puts rows of several
// kinds one after another (the attention sink in f16, then quantized rows).
//
// # Reading
//
// Rows implements sparse.Rows, so the squeezed-attention session reads quantized storage
// without a copy: Dots decodes each key through the kernels (package kernels, KVQ*: 8
// codes per load, levels by a permutation, ranges by a multiply-add, rotation), applies
// its outliers and dots it with the query; Accumulate adds weight·Half·level per code and
// the weighted Mids once, then corrects the outliers. Dequantize decodes a block of rows,
// for a caller that scores many queries against the same keys.
//
// Rows and Joined also implement sparse.GroupRows, which the session uses: DotsN and
// AccumulateN decode each row once, in registers, for up to 4 query vectors (a GQA
// group) at a time (kernels.KVQScoreKeys, KVQScoreKeysLo, KVQAccumulateTokens). Where
// AVX-512 VBMI runs, PrepareQueries turns the queries back by the RoPE angles of
// positions 0..31 once per call, so that each key turns by the angles of its position
// rounded down to a multiple of 32 only; keys of 64 values go 4 rows at a time, their
// 16 sums reduced together. Outliers are added as corrections listed at Init (for keys,
// their difference from the dense value already rotated to the row's position) after
// the kernels, their records fetched while the kernels run; Prefetch lets a reader fetch
// what a run of rows reads first into the second-level cache a little ahead. The rows'
// per-token ranges are kept as floats: in memory, 16 bytes per key outlier, 12 per value
// outlier, 8 per value row and 2 per row plus 4 per 32 rows (where the corrections of a
// row start: a run that starts on a multiple of 32, as a dense session's chunks do,
// reads only the second) beside the stored form.
//
// # Tokens added after the context
//
// The tokens a user adds (a query, an answer) start in the generation's f16 model.Cache.
// An Appender quantizes a long answer's oldest tokens on append, as KVQuant does: it moves
// them in blocks to the squeezed-attention session's tail, keys in half precision, values
// per token with the artifact's value datatype of their layer (decode.Options.Spill says
// when; docs/kv-append.md has the user's side).
package kvquant
