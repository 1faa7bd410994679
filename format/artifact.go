package format

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"squeeze/runtime/earlyexit"
	"squeeze/runtime/index"
	"squeeze/runtime/kvquant"
	"squeeze/runtime/sparse"
)

// SchemaVersion is the version of the section schemas WriteArtifact writes (the header,
// tokens, text and layer.N sections of docs/FORMAT.md, chapter Sections), and the newest
// ReadArtifact reads. It is independent of the container Version. Schema 2 stores
// quantized rows' ranges and outliers compactly, tree centroids as half floats and the
// early-exit predictor's weights as half floats; schema 3 starts the rows' f16 values and
// quantized codes on a cache line of the file (LineUint16s, LineBlob), where schema 2 put
// the line at their length. ReadArtifact reads schemas 2 and 3 and refuses schema 1
// artifacts (ErrSchema: precompute them again).
const SchemaVersion uint32 = 3

// oldestSchema is the oldest section schema ReadArtifact reads.
const oldestSchema uint32 = 2

// writeSchema is the schema WriteArtifact writes: SchemaVersion, except in tests that
// write the older layout to check that it is still read.
var writeSchema = SchemaVersion

// lineRows reports whether rows of a schema start their values on a cache line.
func lineRows(schema uint32) bool { return schema >= 3 }

// KVEncodingF16 is the KV encoding of this schema: keys and values as IEEE half floats
// (sparse.F16Rows).
const KVEncodingF16 = "f16"

// Section names of an artifact.
const (
	SectionHeader = "header"
	SectionTokens = "tokens"
	SectionText   = "text"
)

// LayerSection returns the name of layer l's section, "layer.l".
func LayerSection(l int) string { return "layer." + strconv.Itoa(l) }

// ErrModelMismatch means an artifact was built with another model than the one it is used
// with. CheckModel returns it.
var ErrModelMismatch = errors.New("artifact was built for another model")

// ErrSchema means the artifact's header section has a schema version this package does not
// read: written by a newer squeeze, or by an older one (schema 1; precompute it again).
var ErrSchema = errors.New("unsupported artifact schema version")

// Artifact is the content of a squeezed-context artifact: what precompute writes and what
// ask, serve and inspect read.
type Artifact struct {
	// Header says what the artifact is and how it was made.
	Header Header
	// Context is the squeezed context: tokens, per-layer heads, calibrated thresholds.
	Context *sparse.Context
	// Text is the context's text: the documents joined behind their headers.
	Text string
	// KV describes the quantized rows when Header.Settings.KV is not KVEncodingF16 (the
	// kv section); nil otherwise.
	KV *KVInfo
	// Predictor is SPEED's early-exit predictor fitted on the context (the predictor
	// section), or nil when the artifact has none.
	Predictor *earlyexit.Predictor

	// closer releases the file mapping Context's rows may point into (ReadArtifact).
	closer interface{ Close() error }
}

// Close releases the file mapping of an artifact from ReadArtifact. The Context's rows
// (and everything else that came from the file without a copy) must not be used after
// Close. Close on an artifact built in memory does nothing; it is idempotent.
func (a *Artifact) Close() error {
	if a == nil || a.closer == nil {
		return nil
	}
	c := a.closer
	a.closer = nil
	return c.Close()
}

// Header is the header section: what model and settings made the artifact.
type Header struct {
	// Schema is the section schema version (SchemaVersion when written by this package).
	Schema uint32
	// Model describes the model the context was computed with.
	Model ModelInfo
	// Settings are the precompute settings.
	Settings Settings
	// Tokens is the number of context tokens (len(Context.Tokens)).
	Tokens int
	// Documents lists the documents joined into the text, in order.
	Documents []Document
	// Calibration holds, for each of Context.Thresholds (same order), what the
	// calibration measured; it may be empty.
	Calibration []CalibrationStats
	// Seconds is how long precompute took (informational; 0 keeps the file
	// reproducible, which is what precompute writes).
	Seconds float64
}

// ModelInfo identifies the model and tokenizer and records their shape.
type ModelInfo struct {
	// File is the model file's base name, for messages.
	File string `json:"file"`
	// Fingerprint is ModelFingerprint of the model file (hex SHA-256).
	Fingerprint string `json:"fingerprint"`
	// TokenizerFingerprint is TokenizerFingerprint of the model's vocabulary (hex SHA-256).
	TokenizerFingerprint string `json:"tokenizer_fingerprint"`
	// Arch is general.architecture.
	Arch string `json:"arch"`
	// Layers, Dim, Heads, KVHeads, HeadDim, Vocab and ContextLength are the
	// hyperparameters of the same names in model.Config.
	Layers        int `json:"layers"`
	Dim           int `json:"dim"`
	Heads         int `json:"heads"`
	KVHeads       int `json:"kv_heads"`
	HeadDim       int `json:"head_dim"`
	Vocab         int `json:"vocab"`
	ContextLength int `json:"context_length"`
	// RopeBase, RopeDim, RopeScale, NeoX and RopeFreqFactors are the RoPE settings: the
	// stored keys are rotated with them.
	RopeBase        float64 `json:"rope_base"`
	RopeDim         int     `json:"rope_dim"`
	RopeScale       float64 `json:"rope_scale"`
	NeoX            bool    `json:"neox"`
	RopeFreqFactors bool    `json:"rope_freq_factors"`
}

// Settings are the precompute settings that shaped the artifact.
type Settings struct {
	// KV is the KV rows' encoding: KVEncodingF16 or a quantized encoding such as "nuq3"
	// (ParseKVEncoding; Artifact.KV says more).
	KV string `json:"kv"`
	// Fractions are the tree levels' clusters as fractions of the keys, coarse to fine.
	Fractions []float64 `json:"levels"`
	// Seed seeded the k-means of every tree.
	Seed uint64 `json:"seed"`
	// Sink is the number of first tokens always attended; Window the number of last
	// tokens always attended, whose queries calibrated the thresholds.
	Sink   int `json:"sink"`
	Window int `json:"window"`
	// Budget is the requested default budget (one of Context.Thresholds' budgets).
	Budget float64 `json:"budget"`
	// CentroidCost is the cost of a scored centroid relative to a selected key in the
	// budget measure.
	CentroidCost float64 `json:"centroid_cost"`
	// Batch is the prefill batch size in tokens; Cache the prefill KV cache type ("f16"
	// or "f32").
	Batch int    `json:"batch"`
	Cache string `json:"cache"`
	// HeaderTemplate is the per-document header template; System the text put before the
	// documents ("" for none).
	HeaderTemplate string `json:"header_template"`
	System         string `json:"system"`
	// Chat, if set, says the context was built for chat requests (precompute --chat): the
	// text opens a conversation whose system message holds the context. It is stored in
	// the optional chat section, so that the header's schema is unchanged; nil for a
	// context of plain text.
	Chat *ChatInfo `json:"chat,omitempty"`
}

// Document is one input document's place in the text.
type Document struct {
	// Path is the document's name as given (or found under a directory); "-" for stdin.
	Path string `json:"path"`
	// Offset and Bytes locate the document's content (after its header) in Text.
	Offset int `json:"offset"`
	Bytes  int `json:"bytes"`
}

// CalibrationStats is what the calibration measured for one threshold.
type CalibrationStats struct {
	// KeyFraction and CentroidFraction are the selected keys and the scored centroids per
	// key, on average over the calibration queries (Threshold.Fraction combines them).
	KeyFraction, CentroidFraction float64
	// LevelKeyFractions holds, per tree level, the fraction of keys under surviving clusters.
	LevelKeyFractions []float64
}

// CheckModel returns an error wrapping ErrModelMismatch, naming both model files, unless
// fingerprint (ModelFingerprint of the model file at modelPath) is the one a was built with.
func CheckModel(a *Artifact, modelPath, fingerprint string) error {
	if a.Header.Model.Fingerprint == fingerprint {
		return nil
	}
	return fmt.Errorf("%w: it was built with model %q (fingerprint %.12s), not %q (fingerprint %.12s)",
		ErrModelMismatch, a.Header.Model.File, a.Header.Model.Fingerprint, modelPath, fingerprint)
}

// f16Data returns the half-float bits of rows stored as sparse.F16Rows.
func f16Data(r sparse.Rows) (dim int, data []uint16, ok bool) {
	if v, isF16 := r.(*sparse.F16Rows); isF16 && v != nil {
		return v.Dim, v.Data, true
	}
	return 0, nil, false
}

// encodeHeader encodes the header section with the thresholds of c.
func encodeHeader(e *Encoder, h *Header, th []sparse.Threshold) {
	e.Uint32(writeSchema)
	m := &h.Model
	e.Text(m.File)
	e.Text(m.Fingerprint)
	e.Text(m.TokenizerFingerprint)
	e.Text(m.Arch)
	for _, v := range []int{m.Layers, m.Dim, m.Heads, m.KVHeads, m.HeadDim, m.Vocab, m.ContextLength} {
		e.Uvarint(uint64(v))
	}
	e.Float64(m.RopeBase)
	e.Uvarint(uint64(m.RopeDim))
	e.Float64(m.RopeScale)
	e.Bool(m.NeoX)
	e.Bool(m.RopeFreqFactors)

	s := &h.Settings
	e.Text(s.KV)
	e.Float64s(s.Fractions)
	e.Uint64(s.Seed)
	e.Uvarint(uint64(s.Sink))
	e.Uvarint(uint64(s.Window))
	e.Float64(s.Budget)
	e.Float64(s.CentroidCost)
	e.Uvarint(uint64(s.Batch))
	e.Text(s.Cache)
	e.Text(s.HeaderTemplate)
	e.Text(s.System)

	e.Uvarint(uint64(h.Tokens))
	e.Uvarint(uint64(len(h.Documents)))
	for _, d := range h.Documents {
		e.Text(d.Path)
		e.Uvarint(uint64(d.Offset))
		e.Uvarint(uint64(d.Bytes))
	}
	e.Uvarint(uint64(len(th)))
	for i, t := range th {
		e.Float64(t.Budget)
		e.Float64(t.Fraction)
		e.Float32s(t.LogTau)
		var cs CalibrationStats
		if i < len(h.Calibration) {
			cs = h.Calibration[i]
		}
		e.Float64(cs.KeyFraction)
		e.Float64(cs.CentroidFraction)
		e.Float64s(cs.LevelKeyFractions)
	}
	e.Float64(h.Seconds)
}

// maxShape bounds the header's shape numbers, so that products of them cannot overflow.
const maxShape = 1 << 24

// decodeHeader decodes the header section and checks it on its own.
func decodeHeader(d *Decoder) (*Header, []sparse.Threshold, error) {
	h := &Header{Schema: d.Uint32()}
	if d.Err() == nil && (h.Schema < oldestSchema || h.Schema > SchemaVersion) {
		if h.Schema > SchemaVersion {
			return nil, nil, fmt.Errorf("format: section %q: schema %d (this squeeze reads %d): %w", SectionHeader, h.Schema, SchemaVersion, ErrSchema)
		}
		if h.Schema >= 1 {
			return nil, nil, fmt.Errorf("format: section %q: schema %d, written by an older squeeze (this one reads %d): precompute the artifact again: %w", SectionHeader, h.Schema, SchemaVersion, ErrSchema)
		}
		return nil, nil, headerCorrupt(d, "schema version %d", h.Schema)
	}
	m := &h.Model
	m.File = d.Text()
	m.Fingerprint = d.Text()
	m.TokenizerFingerprint = d.Text()
	m.Arch = d.Text()
	for _, p := range []*int{&m.Layers, &m.Dim, &m.Heads, &m.KVHeads, &m.HeadDim, &m.Vocab, &m.ContextLength} {
		*p = readCount(d)
	}
	m.RopeBase = d.Float64()
	m.RopeDim = readCount(d)
	m.RopeScale = d.Float64()
	m.NeoX = d.Bool()
	m.RopeFreqFactors = d.Bool()

	s := &h.Settings
	s.KV = d.Text()
	s.Fractions = slices.Clone(d.Float64s())
	s.Seed = d.Uint64()
	s.Sink = readCount(d)
	s.Window = readCount(d)
	s.Budget = d.Float64()
	s.CentroidCost = d.Float64()
	s.Batch = readCount(d)
	s.Cache = d.Text()
	s.HeaderTemplate = d.Text()
	s.System = d.Text()

	h.Tokens = readCount(d)
	nd := readCount(d)
	if nd > d.Remaining() { // each document takes at least 3 bytes
		return nil, nil, headerCorrupt(d, "%d documents", nd)
	}
	for range nd {
		h.Documents = append(h.Documents, Document{Path: d.Text(), Offset: readCount(d), Bytes: readCount(d)})
	}
	nt := readCount(d)
	if nt > d.Remaining() {
		return nil, nil, headerCorrupt(d, "%d thresholds", nt)
	}
	var th []sparse.Threshold
	for range nt {
		t := sparse.Threshold{Budget: d.Float64(), Fraction: d.Float64(), LogTau: slices.Clone(d.Float32s())}
		cs := CalibrationStats{KeyFraction: d.Float64(), CentroidFraction: d.Float64(), LevelKeyFractions: slices.Clone(d.Float64s())}
		th = append(th, t)
		h.Calibration = append(h.Calibration, cs)
	}
	h.Seconds = d.Float64()
	if err := d.Finish(); err != nil {
		return nil, nil, err
	}
	if err := checkHeader(h, th); err != nil {
		return nil, nil, headerCorrupt(d, "%v", err)
	}
	return h, th, nil
}

// readCount reads a uvarint as an int, saturating at math.MaxInt32 (which every check
// then refuses).
func readCount(d *Decoder) int {
	v := d.Uvarint()
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(v)
}

// headerCorrupt is an ErrCorrupt error in the header section.
func headerCorrupt(d *Decoder, format string, args ...any) error {
	return &Error{Where: sectionWhere(SectionHeader) + " data", Offset: int64(d.Offset()), Reason: fmt.Sprintf(format, args...), Err: ErrCorrupt}
}

// checkHeader checks the header's values against each other.
func checkHeader(h *Header, th []sparse.Threshold) error {
	m := &h.Model
	s := &h.Settings
	switch {
	case m.Layers < 1 || m.Layers > maxShape:
		return fmt.Errorf("%d layers", m.Layers)
	case m.KVHeads < 1 || m.KVHeads > maxShape || m.Heads < m.KVHeads || m.Heads > maxShape || m.Heads%m.KVHeads != 0:
		return fmt.Errorf("%d heads, %d KV heads", m.Heads, m.KVHeads)
	case m.HeadDim < 1 || m.HeadDim > maxShape:
		return fmt.Errorf("head dimension %d", m.HeadDim)
	case m.Vocab < 1:
		return fmt.Errorf("vocabulary of %d tokens", m.Vocab)
	case !validKV(s.KV):
		return fmt.Errorf("KV encoding %q (this squeeze reads f16, nuq, nf and int of 2 to 4 bits)", s.KV)
	case h.Tokens < 1 || h.Tokens > math.MaxInt32:
		return fmt.Errorf("%d tokens", h.Tokens)
	case s.Sink+s.Window > h.Tokens:
		return fmt.Errorf("sink %d and window %d exceed %d tokens", s.Sink, s.Window, h.Tokens)
	case len(s.Fractions) < 1:
		return errors.New("no tree levels")
	case !finite(s.Budget) || s.Budget <= 0 || s.Budget > 1:
		return fmt.Errorf("budget %v", s.Budget)
	case len(th) < 1:
		return errors.New("no thresholds")
	}
	for i, f := range s.Fractions {
		if !finite(f) || f <= 0 || f > 1 || (i > 0 && f <= s.Fractions[i-1]) {
			return fmt.Errorf("tree level fractions %v", s.Fractions)
		}
	}
	for i, t := range th {
		if !finite(t.Budget) || t.Budget <= 0 || t.Budget > 1 || (i > 0 && t.Budget <= th[i-1].Budget) {
			return fmt.Errorf("threshold %d: budget %v (budgets must ascend in (0, 1])", i, t.Budget)
		}
		if !finite(t.Fraction) || t.Fraction < 0 {
			return fmt.Errorf("threshold %d: measured fraction %v", i, t.Fraction)
		}
		if len(t.LogTau) != len(s.Fractions) {
			return fmt.Errorf("threshold %d: %d log-thresholds for %d levels", i, len(t.LogTau), len(s.Fractions))
		}
		for _, v := range t.LogTau {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 1) {
				return fmt.Errorf("threshold %d: log-threshold %v", i, v)
			}
		}
	}
	end := 0
	for i, doc := range h.Documents {
		if doc.Offset < end || doc.Bytes < 0 || doc.Offset > math.MaxInt32-doc.Bytes {
			return fmt.Errorf("document %d (%q) at %d+%d", i, doc.Path, doc.Offset, doc.Bytes)
		}
		end = doc.Offset + doc.Bytes
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// checkContext checks that c is shaped as h says, before it is written.
func checkContext(h *Header, c *sparse.Context) error {
	m := &h.Model
	if c == nil {
		return errors.New("no context")
	}
	if len(c.Tokens) != h.Tokens {
		return fmt.Errorf("%d tokens, header says %d", len(c.Tokens), h.Tokens)
	}
	if len(c.Layers) != m.Layers {
		return fmt.Errorf("%d layers, header says %d", len(c.Layers), m.Layers)
	}
	if len(h.Calibration) != 0 && len(h.Calibration) != len(c.Thresholds) {
		return fmt.Errorf("%d calibration entries for %d thresholds", len(h.Calibration), len(c.Thresholds))
	}
	return nil
}

// WriteArtifact writes a to path (atomically: through a temporary file renamed into place,
// see Create). The header's Schema is set to SchemaVersion and its Tokens must match the
// context. Rows must be sparse.F16Rows. The bytes depend only on a.
func WriteArtifact(path string, a *Artifact) error {
	return WriteArtifactContext(context.Background(), path, a)
}

// WriteArtifactContext is WriteArtifact, abandoning the file (none is left at path) and
// returning ctx's error if ctx is cancelled before it is committed.
func WriteArtifactContext(ctx context.Context, path string, a *Artifact) error {
	if a == nil {
		return errors.New("format: nil artifact")
	}
	h := a.Header
	h.Schema = SchemaVersion
	if err := checkContext(&h, a.Context); err != nil {
		return fmt.Errorf("format: write %s: %w", path, err)
	}
	if err := checkHeader(&h, a.Context.Thresholds); err != nil {
		return fmt.Errorf("format: write %s: header: %w", path, err)
	}
	if err := checkChat(h.Settings.Chat, a.Text); err != nil {
		return fmt.Errorf("format: write %s: %w", path, err)
	}
	w, err := Create(path)
	if err != nil {
		return err
	}
	defer w.Abort()

	var e Encoder
	encodeHeader(&e, &h, a.Context.Thresholds)
	if err := w.Add(SectionHeader, e.Bytes(), SectionOptions{Compress: true}); err != nil {
		return err
	}
	e = Encoder{}
	e.Int32s(a.Context.Tokens)
	if err := w.Add(SectionTokens, e.Bytes(), SectionOptions{Compress: true}); err != nil {
		return err
	}
	e = Encoder{}
	e.Text(a.Text)
	if err := w.Add(SectionText, e.Bytes(), SectionOptions{Compress: true}); err != nil {
		return err
	}
	if quantized(&h) {
		if a.KV == nil || len(a.KV.Layers) != h.Model.Layers {
			return fmt.Errorf("format: write %s: KV encoding %q without the quantization's description for %d layers", path, h.Settings.KV, h.Model.Layers)
		}
		e = Encoder{}
		encodeKV(&e, a.KV)
		if err := w.Add(SectionKV, e.Bytes(), SectionOptions{Compress: true}); err != nil {
			return err
		}
	}
	if c := h.Settings.Chat; c != nil {
		e = Encoder{}
		encodeChat(&e, c)
		if err := w.Add(SectionChat, e.Bytes(), SectionOptions{Compress: true}); err != nil {
			return err
		}
	}
	if p := a.Predictor; p != nil {
		if err := p.Check(nil); err != nil || p.Dim != h.Model.Dim || p.Layer >= h.Model.Layers {
			return fmt.Errorf("format: write %s: predictor of depth %d and width %d for %d layers of width %d: %v", path, p.Layer, p.Dim, h.Model.Layers, h.Model.Dim, err)
		}
		e = Encoder{}
		encodePredictor(&e, p)
		if err := w.Add(SectionPredictor, e.Bytes(), SectionOptions{}); err != nil {
			return err
		}
	}
	var buf []byte
	for l, heads := range a.Context.Layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		le := NewEncoder(buf)
		if err := encodeLayer(le, &h, heads); err != nil {
			return fmt.Errorf("format: write %s: layer %d: %w", path, l, err)
		}
		if err := w.Add(LayerSection(l), le.Bytes(), SectionOptions{}); err != nil {
			return err
		}
		buf = le.Bytes()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return w.Commit()
}

// encodeLayer encodes one layer's heads: for each KV head, the tree (index encoding, as a
// byte string), the clustered keys and values, the always-attended positions and their
// keys and values.
func encodeLayer(e *Encoder, h *Header, heads []sparse.Head) error {
	d := h.Model.HeadDim
	if len(heads) != h.Model.KVHeads {
		return fmt.Errorf("%d heads, header says %d KV heads", len(heads), h.Model.KVHeads)
	}
	e.Uvarint(uint64(len(heads)))
	for i := range heads {
		hd := &heads[i]
		if hd.Tree == nil {
			return fmt.Errorf("head %d: no tree", i)
		}
		tree, err := hd.Tree.MarshalBinary()
		if err != nil {
			return fmt.Errorf("head %d: %w", i, err)
		}
		e.Blob(tree)
		n := hd.Tree.Len()
		for _, r := range []struct {
			what string
			rows sparse.Rows
			n    int
			pos  []int32
		}{{"keys", hd.Keys, n, hd.Tree.Order()}, {"values", hd.Values, n, hd.Tree.Order()}, {"always keys", hd.AlwaysK, len(hd.Always), hd.Always}, {"always values", hd.AlwaysV, len(hd.Always), hd.Always}} {
			if r.what == "always keys" {
				e.Int32s(hd.Always)
			}
			if quantized(h) {
				if err := encodeRows(e, r.rows, d, r.n, r.pos, lineRows(writeSchema)); err != nil {
					return fmt.Errorf("head %d: %s: %w", i, r.what, err)
				}
				continue
			}
			dim, data, ok := f16Data(r.rows)
			if !ok {
				return fmt.Errorf("head %d: %s are not f16 rows", i, r.what)
			}
			if dim != d || len(data) != r.n*d {
				return fmt.Errorf("head %d: %s: %d values of dimension %d for %d rows of %d", i, r.what, len(data), dim, r.n, d)
			}
			encodeF16Rows(e, data, lineRows(writeSchema))
		}
	}
	return nil
}

// ReadArtifact opens the artifact at path and decodes and checks every section. The KV rows
// are views of the file's mapping (no copy): Close the artifact when done with them.
// Errors for bad files wrap ErrNotArtifact, ErrVersion, ErrCorrupt (naming the section),
// ErrSchema or ErrNoSection.
func ReadArtifact(path string) (*Artifact, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	a, err := decodeArtifact(r)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	a.closer = r
	return a, nil
}

// ParseArtifact is ReadArtifact for an artifact in memory; data must not change while the
// result is in use.
func ParseArtifact(data []byte) (*Artifact, error) {
	r, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return decodeArtifact(r)
}

// ReadHeader decodes only the header section of r (what inspect shows without the layers),
// with the chat section's Settings.Chat when r has one.
func ReadHeader(r *Reader) (*Header, []sparse.Threshold, error) {
	d, err := r.Decoder(SectionHeader)
	if err != nil {
		return nil, nil, err
	}
	h, th, err := decodeHeader(d)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := r.Lookup(SectionChat); ok {
		if d, err = r.Decoder(SectionChat); err != nil {
			return nil, nil, err
		}
		if h.Settings.Chat, err = decodeChat(d); err != nil {
			return nil, nil, err
		}
	}
	return h, th, nil
}

// decodeArtifact decodes every section of r.
func decodeArtifact(r *Reader) (*Artifact, error) {
	h, th, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	a := &Artifact{Header: *h, Context: &sparse.Context{Thresholds: th}}

	d, err := r.Decoder(SectionTokens)
	if err != nil {
		return nil, err
	}
	tokens := d.Int32s()
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if len(tokens) != h.Tokens {
		return nil, &Error{Where: sectionWhere(SectionTokens) + " data", Reason: fmt.Sprintf("%d tokens, header says %d", len(tokens), h.Tokens), Err: ErrCorrupt}
	}
	for i, t := range tokens {
		if t < 0 || int(t) >= h.Model.Vocab {
			return nil, &Error{Where: sectionWhere(SectionTokens) + " data", Offset: int64(i), Reason: fmt.Sprintf("token %d: id %d outside the vocabulary of %d", i, t, h.Model.Vocab), Err: ErrCorrupt}
		}
	}
	a.Context.Tokens = tokens

	if d, err = r.Decoder(SectionText); err != nil {
		return nil, err
	}
	a.Text = d.Text()
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if err := checkChat(h.Settings.Chat, a.Text); err != nil {
		return nil, &Error{Where: sectionWhere(SectionChat) + " data", Reason: err.Error(), Err: ErrCorrupt}
	}
	if n := len(h.Documents); n > 0 {
		if last := h.Documents[n-1]; last.Offset+last.Bytes > len(a.Text) {
			return nil, &Error{Where: sectionWhere(SectionText) + " data", Reason: fmt.Sprintf("document %q ends at %d, past the text's %d bytes", last.Path, last.Offset+last.Bytes, len(a.Text)), Err: ErrCorrupt}
		}
	}

	var rope *kvquant.RoPE
	if quantized(h) {
		d, err := r.Decoder(SectionKV)
		if err != nil {
			return nil, err
		}
		if a.KV, err = decodeKV(d, h); err != nil {
			return nil, err
		}
		if rope, err = newRoPE(h, a.KV); err != nil {
			return nil, &Error{Where: sectionWhere(SectionKV) + " data", Reason: err.Error(), Err: ErrCorrupt}
		}
	}
	if _, ok := r.Lookup(SectionPredictor); ok {
		d, err := r.Decoder(SectionPredictor)
		if err != nil {
			return nil, err
		}
		if a.Predictor, err = decodePredictor(d, h); err != nil {
			return nil, err
		}
	}
	if len(r.Sections()) < 3+h.Model.Layers {
		return nil, &Error{Where: "index", Reason: fmt.Sprintf("%d sections for %d layers", len(r.Sections()), h.Model.Layers), Err: ErrCorrupt}
	}
	if err := decodeLayers(r, h, rope, a.Context); err != nil {
		return nil, err
	}
	return a, nil
}

// decodeLayers decodes every layer section into c.Layers. The layers are independent,
// so a goroutine per core takes them in turn (each with its own scratch); the error of
// the first failing layer is returned, as decoding them in order would.
func decodeLayers(r *Reader, h *Header, rope *kvquant.RoPE, c *sparse.Context) error {
	layers := h.Model.Layers
	c.Layers = make([][]sparse.Head, layers)
	errs := make([]error, layers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), layers) {
		wg.Go(func() {
			seen := make([]bool, h.Tokens)
			for l := int(next.Add(1) - 1); l < layers; l = int(next.Add(1) - 1) {
				d, err := r.Decoder(LayerSection(l))
				if err == nil {
					c.Layers[l], err = decodeLayerKV(d, h, seen, rope)
				}
				errs[l] = err
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeLayer decodes and checks one layer section. seen is scratch space of h.Tokens.
func decodeLayer(d *Decoder, h *Header, seen []bool) ([]sparse.Head, error) {
	return decodeLayerKV(d, h, seen, nil)
}

// decodeLayerKV is decodeLayer with the RoPE table that quantized keys stored before RoPE
// are rotated with (nil for f16 rows or post-RoPE keys).
func decodeLayerKV(d *Decoder, h *Header, seen []bool, rope *kvquant.RoPE) ([]sparse.Head, error) {
	dim := h.Model.HeadDim
	bad := func(format string, args ...any) error {
		return &Error{Where: fmt.Sprintf("section %q data", d.name), Offset: int64(d.Offset()), Reason: fmt.Sprintf(format, args...), Err: ErrCorrupt}
	}
	if n := d.Uvarint(); d.Err() == nil && n != uint64(h.Model.KVHeads) {
		return nil, bad("%d heads, header says %d KV heads", n, h.Model.KVHeads)
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	if h.Model.KVHeads > d.Remaining()/8 { // a head takes at least 8 bytes
		return nil, bad("%d KV heads in %d bytes", h.Model.KVHeads, d.Remaining())
	}
	heads := make([]sparse.Head, h.Model.KVHeads)
	for i := range heads {
		hd := &heads[i]
		blob := d.Blob()
		if err := d.Err(); err != nil {
			return nil, err
		}
		t := new(index.Tree)
		if err := t.UnmarshalBinary(blob); err != nil {
			return nil, bad("head %d: tree: %v", i, err)
		}
		if t.Dim() != dim {
			return nil, bad("head %d: tree of dimension %d, header says %d", i, t.Dim(), dim)
		}
		if t.Levels() != len(h.Settings.Fractions) {
			return nil, bad("head %d: tree of %d levels, header says %d", i, t.Levels(), len(h.Settings.Fractions))
		}
		hd.Tree = t
		rows := func(what string, n int, pos []int32) (sparse.Rows, error) {
			if quantized(h) {
				r, err := decodeRows(d, dim, n, pos, rope, lineRows(h.Schema), false, func(format string, args ...any) error {
					return bad("head %d: %s: %s", i, what, fmt.Sprintf(format, args...))
				})
				if err != nil {
					return nil, err
				}
				return r, nil
			}
			data := decodeF16Rows(d, lineRows(h.Schema))
			if err := d.Err(); err != nil {
				return nil, err
			}
			if len(data) != n*dim {
				return nil, bad("head %d: %d %s values for %d rows of %d", i, len(data), what, n, dim)
			}
			return &sparse.F16Rows{Dim: dim, Data: data}, nil
		}
		var err error
		if hd.Keys, err = rows("key", t.Len(), t.Order()); err != nil {
			return nil, err
		}
		if hd.Values, err = rows("value", t.Len(), t.Order()); err != nil {
			return nil, err
		}
		hd.Always = d.Int32s()
		if err := d.Err(); err != nil {
			return nil, err
		}
		if t.Len()+len(hd.Always) != h.Tokens {
			return nil, bad("head %d: %d clustered and %d always-attended positions for %d tokens", i, t.Len(), len(hd.Always), h.Tokens)
		}
		clear(seen)
		for _, p := range t.Order() {
			if int(p) >= h.Tokens {
				return nil, bad("head %d: position %d outside the %d tokens", i, p, h.Tokens)
			}
			seen[p] = true
		}
		for j, p := range hd.Always {
			if p < 0 || int(p) >= h.Tokens || seen[p] || (j > 0 && p <= hd.Always[j-1]) {
				return nil, bad("head %d: always-attended position %d is out of range, repeated or clustered", i, p)
			}
			seen[p] = true
		}
		if hd.AlwaysK, err = rows("always-attended key", len(hd.Always), hd.Always); err != nil {
			return nil, err
		}
		if hd.AlwaysV, err = rows("always-attended value", len(hd.Always), hd.Always); err != nil {
			return nil, err
		}
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return heads, nil
}
