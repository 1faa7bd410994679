// Package index is the centroid tree of Squeezed Attention (Hooper et al., arXiv
// 2411.09688, §3.2–3.3) as the runtime reads it: the tree over one (layer, KV head)'s
// post-RoPE keys, its lookup, and its binary encoding. Package hierarchy builds trees and
// calibrates their thresholds offline; this package is what a query needs online, so the
// runtime does not import the offline code.
//
// # Tree
//
// hierarchy.Build clusters the keys with spherical k-means (package kmeans) into the finest level's
// clusters; each coarser level clusters the centroids of the level below (by direction,
// each weighted by its number of keys). Every centroid is the mean of all the raw keys
// under it. The clusters of a level are numbered so that the children of one parent are
// contiguous, and the keys are stored cluster by cluster: leaf cluster j covers storage
// indices [Start[j], Start[j+1]) and Order[i] is the position of the key stored at i. The
// caller stores its keys and values in that order, so that a selection is a few
// contiguous spans.
//
// # Scores
//
// For a query q (one head, post-RoPE) and a set J of clusters of one level, with a_j =
// q·c_j/√d and n_j the number of keys under cluster j,
//
//	logZ = log Σ_{j∈J, n_j>0} n_j·exp(a_j),   score_j = a_j − logZ,
//
// the log of the attention probability of one key of cluster j, estimated as if every key
// of the scored clusters had its centroid's logit (paper Eq. 1). Everything is computed in
// the log domain: empty clusters and non-finite logits are masked out of the maximum and
// the sum, so no exponential overflows and no NaN reaches a comparison. Cluster j survives
// if score_j > logτ for the level's log-threshold logτ; a threshold of −Inf keeps every
// cluster of the level without scoring it.
//
// Grouped-query attention: the G query heads that share a KV head make one selection. A
// cluster survives if it survives for ANY of the G heads (its score is the maximum of the
// G heads' scores), so every head finds the keys it would have selected alone; lookup and
// calibration use the same rule.
//
// Prefill: a block of T query tokens makes one selection. Each head's score of a cluster
// is the log of the mean over the T tokens of exp(score) (probabilities averaged, as in
// the paper's prefill kernel, computed by log-sum-exp), then the maximum over heads.
//
// # Lookup
//
// The first level is scored in full. Each further level scores only the children of the
// surviving clusters above, with a denominator over those children only. The leaf
// clusters that survive the last level are the selection. A lookup costs the centroids
// it scores (each read once for all G heads and T tokens) plus the keys it selects.
//
// Calibration (package hierarchy) chooses the thresholds offline.
package index
