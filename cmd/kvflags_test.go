package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"squeeze/format"
	"squeeze/precompute"
	"squeeze/runtime/kvquant"
)

// TestCheckQuantized: quantization settings away from their defaults are refused when
// no encoding is quantized, and accepted when one is.
func TestCheckQuantized(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		encs  []string
		usage string // a flag name the error must name; "" for no error
	}{
		{name: "defaults with f16", encs: []string{"f16"}},
		{name: "defaults spelled out with f16", args: []string{"--outliers", "0.01", "--kv-weighting", "fisher-scale", "--qnorm=auto"}, encs: []string{"f16"}},
		{name: "qnorm with f16", args: []string{"--qnorm"}, encs: []string{"f16"}, usage: "--qnorm"},
		{name: "qnorm off with f16", args: []string{"--qnorm=off"}, encs: []string{"f16"}, usage: "--qnorm"},
		{name: "outliers with f16", args: []string{"--outliers", "0.02"}, encs: []string{"f16"}, usage: "--outliers"},
		{name: "several with f16", args: []string{"--post-rope", "--per-token-keys", "--kv-exact-window"}, encs: []string{"f16"}, usage: "--per-token-keys"},
		{name: "weighting with f16 twice", args: []string{"--kv-weighting", "none"}, encs: []string{"f16", " f16"}, usage: "--kv-weighting"},
		{name: "qnorm with a quantized encoding among f16", args: []string{"--qnorm"}, encs: []string{"f16", " nuq2"}},
		{name: "qnorm with nuq2", args: []string{"--qnorm"}, encs: []string{"nuq2"}},
		{name: "rounding with f16", args: []string{"--kv-rounding", "nearest"}, encs: []string{"f16"}, usage: "--kv-rounding"},
		{name: "default rounding spelled out with f16", args: []string{"--kv-rounding=dots"}, encs: []string{"f16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var k kvQuantFlags
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			k.add(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := k.checkQuantized(tc.encs...)
			if tc.usage == "" {
				if err != nil {
					t.Fatalf("checkQuantized(%q) with %v: %v", tc.encs, tc.args, err)
				}
				return
			}
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.usage) {
				t.Fatalf("checkQuantized(%q) with %v: %v, want a usage error naming %s", tc.encs, tc.args, err, tc.usage)
			}
		})
	}
}

// TestKVQuantFlags: the shared quantization flags give the KV options precompute and eval
// use (--per-token-keys among them, for quantized encodings only), and bad values are
// errors.
func TestKVQuantFlags(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		enc       string
		tokenKeys bool
		postRoPE  bool
		qnorm     precompute.QNormMode
		rounding  precompute.Rounding
		parseErr  bool // pflag refuses the arguments
		usage     bool // options refuses them
	}{
		{name: "default", enc: "nuq3"},
		{name: "per-token keys", args: []string{"--per-token-keys"}, enc: "nuq3", tokenKeys: true},
		{name: "per-token keys after RoPE", args: []string{"--per-token-keys", "--post-rope"}, enc: "int2", tokenKeys: true, postRoPE: true},
		{name: "explicitly off", args: []string{"--per-token-keys=false"}, enc: "nf4"},
		{name: "f16 takes none", args: []string{"--per-token-keys", "--post-rope"}, enc: "f16"},
		{name: "not a boolean", args: []string{"--per-token-keys=maybe"}, parseErr: true},
		{name: "with a bad encoding", args: []string{"--per-token-keys"}, enc: "nuq9", usage: true},
		{name: "with bad outliers", args: []string{"--per-token-keys", "--outliers", "0.5"}, enc: "nuq3", usage: true},
		{name: "qnorm alone is on", args: []string{"--qnorm"}, enc: "nuq3", qnorm: precompute.QNormOn},
		{name: "qnorm off", args: []string{"--qnorm=off"}, enc: "nuq2", qnorm: precompute.QNormOff},
		{name: "qnorm false", args: []string{"--qnorm=false"}, enc: "nuq2", qnorm: precompute.QNormOff},
		{name: "qnorm true", args: []string{"--qnorm=true"}, enc: "nuq4", qnorm: precompute.QNormOn},
		{name: "qnorm auto", args: []string{"--qnorm=auto"}, enc: "nuq2"},
		{name: "bad qnorm", args: []string{"--qnorm=maybe"}, enc: "nuq2", usage: true},
		{name: "with a bad weighting", args: []string{"--per-token-keys", "--kv-weighting", "x"}, enc: "nuq3", usage: true},
		{name: "nearest rounding", args: []string{"--kv-rounding", "nearest"}, enc: "nuq3", rounding: precompute.RoundingNearest},
		{name: "dots rounding", args: []string{"--kv-rounding=dots"}, enc: "int3"},
		{name: "bad rounding", args: []string{"--kv-rounding", "up"}, enc: "nuq3", usage: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var k kvQuantFlags
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			fs.SetOutput(io.Discard)
			k.add(fs)
			if err := fs.Parse(tc.args); (err != nil) != tc.parseErr {
				t.Fatalf("parse %v: %v", tc.args, err)
			}
			if tc.parseErr {
				return
			}
			o, err := k.options(tc.enc)
			var ue *usageError
			if tc.usage {
				if !errors.As(err, &ue) {
					t.Fatalf("options(%q) with %v: %v, want a usage error", tc.enc, tc.args, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Encoding != tc.enc || o.PerTokenKeys != tc.tokenKeys || o.PostRoPE != tc.postRoPE || o.QNorm != tc.qnorm || o.Rounding != tc.rounding {
				t.Fatalf("options(%q) with %v: %+v", tc.enc, tc.args, o)
			}
		})
	}
}

// TestPerTokenKeysArtifact: precompute --per-token-keys writes an artifact whose keys
// have a range per row, which ask answers from, densely and squeezed; a bad value is a
// usage error of both commands.
func TestPerTokenKeysArtifact(t *testing.T) {
	isolate(t)
	model, in := tinyModel(t), inputDir(t)
	out := filepath.Join(t.TempDir(), "ctx.sqz")
	r := runCLI(t, context.Background(), "", false, "precompute", "--json", "--model", model, "-o", out,
		"--window", "8", "--threads", "1", "--kv", "nuq3", "--per-token-keys", in)
	if r.code != 0 {
		t.Fatalf("precompute exit %d: %s", r.code, r.stderr)
	}
	a, err := format.ReadArtifact(out)
	if err != nil {
		t.Fatal(err)
	}
	for l, heads := range a.Context.Layers {
		for h, hd := range heads {
			if k, ok := hd.Keys.(*kvquant.Rows); !ok || k.Axis != kvquant.PerToken || k.RoPE == nil {
				t.Fatalf("layer %d head %d: keys %T, want per-token rows stored before RoPE", l, h, hd.Keys)
			}
		}
	}
	a.Close()
	r = runCLI(t, context.Background(), "", false, "inspect", "--json", out)
	var rep struct {
		KVQuant *struct {
			PerTokenKeys bool `json:"per_token_keys"`
		} `json:"kv_quant"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil || rep.KVQuant == nil || !rep.KVQuant.PerTokenKeys {
		t.Fatalf("inspect --json (exit %d, %v): kv_quant does not say per_token_keys: %s", r.code, err, r.stdout)
	}
	askAtBudgets(t, model, out)
	for _, args := range [][]string{
		{"precompute", "--model", model, "-o", out, "--kv", "nuq3", "--per-token-keys=2", in},
		{"eval", "--model", model, "--text", filepath.Join(in, "a.go"), "--kv", "nuq3", "--per-token-keys=yes"},
	} {
		if r := runCLI(t, context.Background(), "", false, args...); r.code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, r.code, exitUsage, r.stderr)
		}
	}
}
