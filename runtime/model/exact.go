package model

// ExactPrefix is a Prefix that attends a batch of tokens giving each one bitwise the
// result Attend gives it alone. A Forward with Options.Exact calls AttendExact once per
// layer for the whole batch rather than Attend once per token, so that the prefix's
// keys and values can be read once for all the batch's tokens.
type ExactPrefix interface {
	Prefix
	// AttendExact is Attend for n tokens, each computed as Attend computes one token.
	AttendExact(layer int, q []float32, n int, out, lse []float32)
}
