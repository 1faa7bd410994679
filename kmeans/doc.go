// Package kmeans clusters vectors with spherical (cosine) k-means and scalars with exact
// weighted 1-D k-means.
//
// Spherical clusters float32 vectors by direction, as Squeezed Attention (Hooper et al.,
// arXiv 2411.09688, §3) clusters a head's post-RoPE keys: the vectors are L2-normalised,
// seeded with k-means++ (Arthur and Vassilvitskii, 2007) and refined with Lloyd iterations
// in which each vector goes to the unit centroid of largest inner product (Dhillon and
// Modha, 2001). The centroid reported for a cluster is the mean of its RAW vectors, so that
// q·c equals the mean of q·k over the cluster.
//
// The cost is linear in the number of vectors: the input is cut into blocks of at most
// (and more than half of) Options.BlockSize consecutive vectors, each clustered on its
// own with a share of the clusters proportional to its size (as
// SqueezeAILab/MultipoleAttention does with windows of tokens). A block of m vectors with
// k = f·m clusters costs O(m·k·d) per iteration, so a fixed fraction f gives a cost per
// vector bounded by that of one full block however long the input is.
//
// Results are a deterministic function of the data, k and Options other than Threads: every
// block draws from its own generator seeded by (Seed, block index), and all reductions run
// in a fixed order.
//
// Weighted1D is the exact optimum of weighted 1-D k-means (dynamic programming over the
// sorted values, as in Ckmeans.1d.dp by Wang and Song, 2011), for building non-uniform
// quantization levels.
package kmeans
