// Package hierarchy is the centroid tree of Squeezed Attention (Hooper et al., arXiv
// 2411.09688, §3.2–3.3) over the post-RoPE keys of one (layer, KV head): a query scores a
// few centroids instead of every key, and exact attention then reads only the keys of the
// clusters that matter.
//
// # Tree
//
// Build clusters the keys with spherical k-means (package kmeans) into the finest level's
// clusters; each coarser level clusters the centroids of the level below (by direction,
// each weighted by its number of keys). Every centroid is the mean of all the raw keys
// under it. The clusters of a level are numbered so that the children of one parent are
// contiguous, and the keys are stored cluster by cluster: leaf cluster j covers storage
// indices [Start[j], Start[j+1]) and Order[i] is the position of the key stored at i. The
// caller stores its keys and values in that order, so that a selection is a few
// contiguous spans. To make them fewer, clusters that point the same way, which queries
// tend to select together, are stored side by side: the first level in a chain of
// nearest neighbours (by cosine), each parent's children in a chain that starts next to
// the previous parent's last child.
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
// # Calibration
//
// Calibrate sets the thresholds from the context's own calibration queries (the last
// window of the context) so that, on average over those queries, (selected keys +
// CentroidCost × centroids read) / keys equals a budget. Thresholds are shared by all
// trees, one per level. The levels are set top-down: each coarser level so that the keys
// under its surviving clusters are a multiple (CoarseSlack per level) of the budget, then
// the finest level, by bisection, to the budget itself.
package hierarchy
