package speculate

import (
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
)

// Target is the model a generation verifies drafts with, as a Drafter sees it: the
// model, the generation's KV cache, the pool of its forward passes and the fixed
// context (nil when there is none) that every pass attends to.
//
// A Drafter may run its own forward passes on Cache (with Options.Prefix set to
// Prefix, so that positions match), for example the first layers of the model to read
// an early hidden state, but it must leave the cache as it found it: Cache.Len()
// unchanged (Cache.Truncate drops what it added), so that the verification pass that
// follows writes every position of the draft itself.
type Target struct {
	Model  *model.Model
	Cache  *model.Cache
	Pool   *kernels.Pool
	Prefix model.Prefix
}

// Drafter proposes tokens that the model is likely to generate next. Drafts cost
// correctness nothing: the verification pass keeps only the longest prefix of a draft
// that plain decoding would also have produced, so a Drafter trades the work of
// drafting against the tokens it gets accepted. A Drafter serves one generation at a
// time (one goroutine); Reset starts the next one.
//
// The sequence a Drafter sees is every token after the fixed context: the prompt, then
// each token generation committed. Its last token is the pending one: committed (the
// previous pass chose it), but not yet run through the model, so Cache.Len() is
// len(seq)-1. The next verification pass runs the pending token followed by the draft,
// in one batch.
type Drafter interface {
	// Name identifies the draft source in statistics and on the command line, for
	// example "ngram" or "early".
	Name() string
	// Reset starts a generation on t whose sequence begins with prompt (which the
	// Drafter may index). It is called before the prompt's prefill: t.Cache is empty
	// then. t is nil when the generation runs on something else than a model.Model
	// (tests of the decoding loop). The slices are the caller's: copy what you keep.
	Reset(t *Target, prompt []int32)
	// Draft appends to dst at most limit tokens predicted to follow seq (see the type's
	// doc: seq ends with the pending token) and returns the extended slice; it may
	// append nothing. Between Reset calls, seq only grows, and every call's seq extends
	// the previous call's, so a Drafter can index new tokens incrementally. seq is
	// read-only and must not be kept.
	Draft(dst []int32, seq []int32, limit int) []int32
}

// Observer is a Drafter that reads one layer's values in every decoding pass (a
// predictor from an early layer's hidden state, for example): the decoding loop sets
// model.Options.Observe and forwards that layer's LayerState, for verification passes
// and for plain one-token passes alike (not for the prompt's prefill). The rows of the
// state are the pass's tokens in order: the pending token, then the draft if any. The
// pass may then be rolled back to its accepted rows (Verified says how many).
type Observer interface {
	Drafter
	// ObservedLayer is the index of the layer whose state Observe receives; a negative
	// value observes nothing.
	ObservedLayer() int
	// Observe receives the layer's state during the pass. The slices are valid only
	// during the call and must not be modified: copy what you keep.
	Observe(s *model.LayerState)
}

// Verified is a Drafter that wants to know the outcome of each verification pass of
// its drafts.
type Verified interface {
	Drafter
	// Verified reports that a pass ran the pending token and drafted tokens of the
	// Drafter's draft, of which the first accepted matched plain decoding; then
	// rows 0..accepted of the pass (the pending token and the accepted drafts) are in
	// the cache, and the token plain decoding chose after them is the new pending one.
	Verified(drafted, accepted int)
}

// Settler is a Drafter whose drafts can be verified out of order, or long after the
// next draft (a pipeline keeps several drafts in flight): Ticket names its last draft,
// and Settle reports how the draft a ticket names fared, as Verified does for the last
// draft.
type Settler interface {
	Drafter
	// Ticket returns a handle on the last draft (the one Draft just returned), to pass
	// to Settle once the draft is verified.
	Ticket() Ticket
	// Settle reports that of the drafted tokens of t's draft that went in, the first
	// accepted matched plain decoding.
	Settle(t Ticket, drafted, accepted int)
}

// maxTicket is the most drafted tokens a Ticket records: later tokens of a longer
// draft go unrecorded.
const maxTicket = 16

// Ticket names a draft of a Settler: the statistics its tokens count towards. The zero
// Ticket names nothing (Settle ignores it).
type Ticket struct {
	n     uint8
	cells [maxTicket]uint8
}
