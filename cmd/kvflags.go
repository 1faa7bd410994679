package cmd

import (
	"strings"

	"github.com/spf13/pflag"

	"squeeze/calibrate"
	"squeeze/format"
	"squeeze/precompute"
	"squeeze/runtime/kvquant"
)

// kvQuantFlags are the KV quantization settings "precompute" and "eval" share (the
// flags besides --kv itself, which each command reads its own way).
type kvQuantFlags struct {
	Outliers  float64
	QNorm     string
	PostRoPE  bool
	TokenKeys bool
	Weighting string
	ExactWin  bool
	Rounding  string
}

// add defines the flags on f.
func (k *kvQuantFlags) add(f *pflag.FlagSet) {
	f.Float64Var(&k.Outliers, "outliers", kvquant.DefaultOutliers, "fraction of each quantized vector kept exact, half at each end, in [0, 0.5)")
	f.StringVar(&k.QNorm, "qnorm", "auto", "correct the quantized levels by Q-Norm: auto (at 2 bits), on or off (--qnorm alone: on)")
	f.Lookup("qnorm").NoOptDefVal = "on"
	f.BoolVar(&k.PostRoPE, "post-rope", false, "quantize keys after RoPE (ablation of pre-RoPE keys)")
	f.BoolVar(&k.TokenKeys, "per-token-keys", false, "quantize keys per token like values (ablation of per-channel keys)")
	f.StringVar(&k.Weighting, "kv-weighting", "fisher-scale", "nuq datatype fit: fisher-scale, fisher or none")
	f.BoolVar(&k.ExactWin, "kv-exact-window", false, "with a quantized --kv: keep the last --window tokens in f16 like the sink")
	f.StringVar(&k.Rounding, "kv-rounding", "dots", "how codes are chosen: dots (each vector's codes keep its dot products with the context's last queries, or the output projection, accurate) or nearest (each value to its nearest level)")
}

// options checks the flags and returns the settings of KV encoding enc (f16 takes none
// of them).
func (k *kvQuantFlags) options(enc string) (precompute.KVOptions, error) {
	if !(k.Outliers >= 0 && k.Outliers < 0.5) {
		return precompute.KVOptions{}, usageErrorf("--outliers %v: want a fraction in [0, 0.5)", k.Outliers)
	}
	if _, _, err := format.ParseKVEncoding(enc); err != nil {
		return precompute.KVOptions{}, usageErrorf("--kv: %v", err)
	}
	weighting, err := parseWeighting(k.Weighting)
	if err != nil {
		return precompute.KVOptions{}, err
	}
	qnorm, err := parseQNorm(k.QNorm)
	if err != nil {
		return precompute.KVOptions{}, err
	}
	rounding, err := parseRounding(k.Rounding)
	if err != nil {
		return precompute.KVOptions{}, err
	}
	if enc == format.KVEncodingF16 {
		return precompute.KVOptions{Encoding: enc}, nil
	}
	return precompute.KVOptions{Encoding: enc, Outliers: k.Outliers, QNorm: qnorm, PostRoPE: k.PostRoPE,
		PerTokenKeys: k.TokenKeys, Weighting: weighting, ExactWindow: k.ExactWin, Rounding: rounding}, nil
}

// checkQuantized refuses quantization settings away from their defaults when none of
// the encodings encs is quantized: f16 storage ignores them, and a run that silently
// ignored, say, --qnorm would answer a question the user did not ask.
func (k *kvQuantFlags) checkQuantized(encs ...string) error {
	for _, e := range encs {
		if strings.TrimSpace(e) != format.KVEncodingF16 {
			return nil
		}
	}
	var set []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"--outliers", k.Outliers != kvquant.DefaultOutliers},
		{"--qnorm", k.QNorm != precompute.QNormAuto.String()},
		{"--post-rope", k.PostRoPE},
		{"--per-token-keys", k.TokenKeys},
		{"--kv-weighting", k.Weighting != calibrate.FisherScale.String()},
		{"--kv-exact-window", k.ExactWin},
		{"--kv-rounding", k.Rounding != precompute.RoundingDots.String()},
	} {
		if f.set {
			set = append(set, f.name)
		}
	}
	if len(set) > 0 {
		return usageErrorf("%s: only for a quantized --kv (nuq2-4, nf2-4, int2-4), not f16", strings.Join(set, ", "))
	}
	return nil
}

// parseWeighting reads --kv-weighting.
func parseWeighting(s string) (calibrate.Weighting, error) {
	for _, w := range []calibrate.Weighting{calibrate.FisherScale, calibrate.FisherOnly, calibrate.Unweighted} {
		if s == w.String() {
			return w, nil
		}
	}
	return 0, usageErrorf("--kv-weighting %q: want fisher-scale, fisher or none", s)
}

// parseQNorm reads --qnorm: auto, on or off, with true and false (the flag's old boolean
// spelling) for on and off.
func parseQNorm(s string) (precompute.QNormMode, error) {
	switch s {
	case "true":
		return precompute.QNormOn, nil
	case "false":
		return precompute.QNormOff, nil
	}
	for _, m := range []precompute.QNormMode{precompute.QNormAuto, precompute.QNormOn, precompute.QNormOff} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, usageErrorf("--qnorm %q: want auto, on or off", s)
}

// parseRounding reads --kv-rounding.
func parseRounding(s string) (precompute.Rounding, error) {
	for _, r := range []precompute.Rounding{precompute.RoundingDots, precompute.RoundingNearest} {
		if s == r.String() {
			return r, nil
		}
	}
	return 0, usageErrorf("--kv-rounding %q: want dots or nearest", s)
}
