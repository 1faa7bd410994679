package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"squeeze/format"
	"squeeze/runtime/kvquant"
	"squeeze/runtime/sparse"
)

// inspectReport is the JSON object "squeeze inspect --json" prints. Scripts depend on these
// names: add fields, never rename or remove one.
type inspectReport struct {
	File             string             `json:"file"`
	FileBytes        int64              `json:"file_bytes"`
	ContainerVersion uint32             `json:"container_version"`
	Schema           uint32             `json:"schema"`
	Model            format.ModelInfo   `json:"model"`
	Settings         format.Settings    `json:"settings"`
	Tokens           int                `json:"tokens"`
	Documents        []format.Document  `json:"documents"`
	Sections         []sectionEntry     `json:"sections"`
	Calibration      []calibrationEntry `json:"calibration"`
	Layers           []layerStats       `json:"layers"`
	// KV storage: the encoding, its bytes (codes, ranges, outliers and offsets; f16
	// rows at 2 bytes a value) and bits per stored key or value element, overheads
	// included; the quantization settings (null for f16).
	KV             string        `json:"kv"`
	KVBytes        int64         `json:"kv_bytes"`
	BitsPerElement float64       `json:"bits_per_element"`
	KVQuant        *kvQuantStats `json:"kv_quant"`
	// Predictor is SPEED's early-exit predictor (null when the artifact has none).
	Predictor *predictorStats `json:"predictor"`
}

// predictorStats describe the early-exit predictor: its depth and rank, and what
// precompute measured for every candidate depth.
type predictorStats struct {
	Layer  int          `json:"layer"`
	Rank   int          `json:"rank"`
	Scores []scoreEntry `json:"scores"`
}

// scoreEntry is one candidate depth's acceptance, with the fitted map and the raw exit.
type scoreEntry struct {
	Layer      int     `json:"layer"`
	Acceptance float64 `json:"acceptance"`
	Raw        float64 `json:"raw"`
}

// kvQuantStats describe a quantized artifact's KV storage.
type kvQuantStats struct {
	Outliers float64 `json:"outliers"`
	QNorm    bool    `json:"qnorm"`
	PostRoPE bool    `json:"post_rope"`
	// PerTokenKeys reports keys quantized per token (the --per-token-keys ablation)
	// rather than per channel.
	PerTokenKeys bool   `json:"per_token_keys"`
	Calibration  string `json:"calibration"`
	// OutlierFraction is the fraction of elements stored as outliers.
	OutlierFraction float64 `json:"outlier_fraction"`
}

// sectionEntry is one section of the file.
type sectionEntry struct {
	Name        string `json:"name"`
	Compression string `json:"compression"`
	StoredBytes int64  `json:"stored_bytes"`
	RawBytes    int64  `json:"raw_bytes"`
}

// layerStats are one layer's cluster statistics, over its KV heads, and its KV storage.
type layerStats struct {
	Layer  int          `json:"layer"`
	Levels []levelStats `json:"levels"`
	// KVBytes and BitsPerElement as for the whole artifact; KeyError and ValueError the
	// relative reconstruction errors of quantized keys and values (0 for f16).
	KVBytes        int64   `json:"kv_bytes"`
	BitsPerElement float64 `json:"bits_per_element"`
	KeyError       float64 `json:"key_error"`
	ValueError     float64 `json:"value_error"`
}

// levelStats describe one tree level, summed over a layer's KV heads.
type levelStats struct {
	Clusters int     `json:"clusters"`
	Empty    int     `json:"empty"`
	MeanSize float64 `json:"mean_size"`
	MaxSize  int     `json:"max_size"`
}

// artifactError marks a missing, unreadable or corrupt artifact: exit status 3, like a bad
// model file, with the format package's message.
type artifactError struct {
	path string
	err  error
}

func (e *artifactError) Error() string {
	msg := e.err.Error()
	if !strings.Contains(msg, e.path) {
		msg = e.path + ": " + msg
	}
	return "artifact: " + msg
}

// Unwrap gives the cause and a modelError, which exitCode maps to status 3.
func (e *artifactError) Unwrap() []error { return []error{e.err, &modelError{e.path, e.err}} }

func newInspectCommand(g *globalOptions, s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect [flags] FILE.sqz",
		Short: "Show what an artifact holds: model, settings, sizes, calibration, clusters",
		Long: `Check an artifact written by "squeeze precompute" (every section's checksum
and contents) and describe it: the model it was built with, the precompute
settings, the token count and documents, the size of each section, the budget
calibration (for each calibrated budget: the fraction of keys the calibration
queries read, split into selected keys and scored centroids, and the per-level
log-thresholds), and per layer the cluster statistics of each tree level,
summed over the KV heads (clusters, empty clusters, mean and largest cluster),
and the KV storage: bytes and bits per element (overheads included) per layer
and in all, and for quantized artifacts (--kv at precompute) the settings and
each layer's relative reconstruction error of keys and values, and SPEED's
early-exit predictor (the depth its drafts exit at, its rank, and each candidate
depth's acceptance on the context's last tokens, fitted and raw).

A missing, truncated or corrupt file exits with status 3 and the error.

With --json one object is printed with the fields file, file_bytes,
container_version, schema, model, settings, tokens, documents, sections (name,
compression, stored_bytes, raw_bytes), calibration (budget, fraction,
key_fraction, centroid_fraction, log_thresholds), layers (layer, levels:
clusters, empty, mean_size, max_size; kv_bytes, bits_per_element, key_error,
value_error), kv, kv_bytes, bits_per_element, kv_quant (outliers, qnorm,
post_rope, per_token_keys, calibration, outlier_fraction; null for f16) and predictor (layer,
rank, scores: layer, acceptance, raw; null without one).`,
		Example: `  $ squeeze inspect repo.sqz
  $ squeeze inspect --json repo.sqz | jq '.calibration[] | [.budget, .fraction]'`,
		Args: exactArgs(1, "inspect takes one artifact file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd.Context(), args[0], g.JSON, s)
		},
	}
	return cmd
}

// runInspect reads the artifact and prints its description.
func runInspect(_ context.Context, path string, asJSON bool, s streams) error {
	r, err := format.Open(path)
	if err != nil {
		return &artifactError{path, err}
	}
	rep := inspectReport{File: path, FileBytes: r.Size(), ContainerVersion: r.Version()}
	for _, sec := range r.Sections() {
		rep.Sections = append(rep.Sections, sectionEntry{sec.Name, sec.Compression.String(), sec.StoredSize, sec.RawSize})
	}
	r.Close()
	a, err := format.ReadArtifact(path)
	if err != nil {
		return &artifactError{path, err}
	}
	defer a.Close()
	h := &a.Header
	rep.Schema, rep.Model, rep.Settings, rep.Tokens = h.Schema, h.Model, h.Settings, h.Tokens
	rep.Documents = h.Documents
	if rep.Documents == nil {
		rep.Documents = []format.Document{}
	}
	rep.Calibration = calibrationEntries(a.Context.Thresholds, h.Calibration)
	rep.KV = h.Settings.KV
	var outliers int
	elements := int64(h.Tokens) * int64(h.Model.KVHeads) * int64(h.Model.HeadDim) * 2 // per layer
	for l, heads := range a.Context.Layers {
		ls := layerStats{Layer: l}
		for _, hd := range heads {
			for _, r := range []sparse.Rows{hd.Keys, hd.Values, hd.AlwaysK, hd.AlwaysV} {
				ls.KVBytes += int64(kvquant.Bytes(r))
				outliers += kvquant.Outliers(r)
			}
		}
		ls.BitsPerElement = round4(float64(8*ls.KVBytes) / float64(elements))
		if a.KV != nil && l < len(a.KV.Layers) {
			ls.KeyError, ls.ValueError = round4(a.KV.Layers[l].KeyError), round4(a.KV.Layers[l].ValueError)
		}
		rep.KVBytes += ls.KVBytes
		for lv := range len(h.Settings.Fractions) {
			var st levelStats
			keys := 0
			for _, hd := range heads {
				for _, c := range hd.Tree.Counts(lv) {
					st.Clusters++
					keys += int(c)
					if c == 0 {
						st.Empty++
					}
					st.MaxSize = max(st.MaxSize, int(c))
				}
			}
			if st.Clusters > 0 {
				st.MeanSize = round1(float64(keys) / float64(st.Clusters))
			}
			ls.Levels = append(ls.Levels, st)
		}
		rep.Layers = append(rep.Layers, ls)
	}
	if n := elements * int64(len(a.Context.Layers)); n > 0 {
		rep.BitsPerElement = round4(float64(8*rep.KVBytes) / float64(n))
		if a.KV != nil {
			rep.KVQuant = &kvQuantStats{Outliers: a.KV.Outliers, QNorm: a.KV.QNorm, PostRoPE: a.KV.PostRoPE,
				PerTokenKeys: perTokenKeys(a.Context), Calibration: a.KV.Calibration,
				OutlierFraction: round4(float64(outliers) / float64(n))}
		}
	}
	if p := a.Predictor; p != nil {
		rep.Predictor = &predictorStats{Layer: p.Layer, Rank: p.Rank, Scores: []scoreEntry{}}
		for _, sc := range p.Scores {
			rep.Predictor.Scores = append(rep.Predictor.Scores, scoreEntry{sc.Layer, round4(sc.Acceptance), round4(sc.Raw)})
		}
	}
	if asJSON {
		enc := json.NewEncoder(s.Out)
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}
	return printInspect(s.Out, &rep)
}

// printInspect writes the human-readable description.
func printInspect(out io.Writer, r *inspectReport) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	m, st := &r.Model, &r.Settings
	fmt.Fprintf(w, "file\t%s (%.2f MB, container v%d, schema v%d)\n", r.File, float64(r.FileBytes)/1e6, r.ContainerVersion, r.Schema)
	fmt.Fprintf(w, "model\t%s (%s, %d layers, %d heads / %d KV heads of %d, vocab %d, context %d)\n",
		m.File, m.Arch, m.Layers, m.Heads, m.KVHeads, m.HeadDim, m.Vocab, m.ContextLength)
	fmt.Fprintf(w, "fingerprints\tmodel %.16s, tokenizer %.16s\n", m.Fingerprint, m.TokenizerFingerprint)
	fmt.Fprintf(w, "tokens\t%d in %d documents\n", r.Tokens, len(r.Documents))
	levels := make([]string, len(st.Fractions))
	for i, f := range st.Fractions {
		levels[i] = fmt.Sprint(f)
	}
	fmt.Fprintf(w, "settings\tkv %s, levels %s, seed %d, sink %d, window %d, budget %g, centroid cost %g, batch %d, cache %s\n",
		st.KV, strings.Join(levels, ","), st.Seed, st.Sink, st.Window, st.Budget, st.CentroidCost, st.Batch, st.Cache)
	kv := fmt.Sprintf("%s, %.2f MB, %.3f bits per element", r.KV, float64(r.KVBytes)/1e6, r.BitsPerElement)
	if q := r.KVQuant; q != nil {
		kv += fmt.Sprintf(" (outliers %g, %.4f stored; qnorm %v, post-RoPE keys %v, per-token keys %v, datatypes %q)",
			q.Outliers, q.OutlierFraction, q.QNorm, q.PostRoPE, q.PerTokenKeys, q.Calibration)
	}
	fmt.Fprintf(w, "kv\t%s\n", kv)
	if p := r.Predictor; p != nil {
		scores := make([]string, len(p.Scores))
		for i, sc := range p.Scores {
			scores[i] = fmt.Sprintf("%d: %.3f (raw %.3f)", sc.Layer, sc.Acceptance, sc.Raw)
		}
		fmt.Fprintf(w, "predictor\tdrafts from layer %d, rank %d; acceptance by depth %s\n", p.Layer, p.Rank, strings.Join(scores, ", "))
	}
	fmt.Fprintf(w, "header\t%q\n", st.HeaderTemplate)
	if st.System != "" {
		sys := st.System
		if len(sys) > 60 {
			sys = sys[:60] + "..."
		}
		fmt.Fprintf(w, "system\t%q\n", sys)
	}
	if err := w.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nsections")
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "name\tcompression\tstored\traw\t")
	for _, s := range r.Sections {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t\n", s.Name, s.Compression, s.StoredBytes, s.RawBytes)
	}
	if err := w.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\ncalibration (fraction of the context's keys read by the calibration queries)")
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "budget\tmeasured\tkeys\tcentroids\tlog-thresholds\t")
	for _, c := range r.Calibration {
		taus := make([]string, len(c.LogThresholds))
		for i, v := range c.LogThresholds {
			if v < -1e300 {
				taus[i] = "-inf"
			} else {
				taus[i] = fmt.Sprintf("%.3f", v)
			}
		}
		fmt.Fprintf(w, "%.4g\t%.4f\t%.4f\t%.4f\t%s\t\n", c.Budget, c.Fraction, c.KeyFraction, c.CentroidFraction, strings.Join(taus, " "))
	}
	if err := w.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nclusters per layer (summed over KV heads; per level: clusters, empty, mean size, largest) and KV storage")
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	header := "layer\t"
	for i := range st.Fractions {
		header += fmt.Sprintf("L%d clusters\tempty\tmean\tmax\t", i)
	}
	header += "KV bytes\tbits/elem\t"
	if r.KVQuant != nil {
		header += "K error\tV error\t"
	}
	fmt.Fprintln(w, header)
	for _, l := range r.Layers {
		line := fmt.Sprintf("%d\t", l.Layer)
		for _, lv := range l.Levels {
			line += fmt.Sprintf("%d\t%d\t%.1f\t%d\t", lv.Clusters, lv.Empty, lv.MeanSize, lv.MaxSize)
		}
		line += fmt.Sprintf("%d\t%.3f\t", l.KVBytes, l.BitsPerElement)
		if r.KVQuant != nil {
			line += fmt.Sprintf("%.4f\t%.4f\t", l.KeyError, l.ValueError)
		}
		fmt.Fprintln(w, line)
	}
	return w.Flush()
}

// perTokenKeys reports whether a quantized context's keys are stored with a range per
// key row (the --per-token-keys ablation) rather than per channel.
func perTokenKeys(c *sparse.Context) bool {
	for _, heads := range c.Layers {
		for _, hd := range heads {
			if k, ok := hd.Keys.(*kvquant.Rows); ok {
				return k.Axis == kvquant.PerToken
			}
		}
	}
	return false
}
