package cmd

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuantizedArtifact: precompute --kv nuq3 writes a quantized artifact that inspect
// describes (kv, bits per element, errors per layer) and ask answers from.
func TestQuantizedArtifact(t *testing.T) {
	isolate(t)
	model, in := tinyModel(t), inputDir(t)
	out := filepath.Join(t.TempDir(), "ctx.sqz")
	r := runCLI(t, context.Background(), "", false, "precompute", "--json", "--model", model, "-o", out,
		"--window", "8", "--threads", "1", "--kv", "nuq3", "--outliers", "0.02", "--qnorm", in)
	if r.code != 0 {
		t.Fatalf("precompute exit %d: %s", r.code, r.stderr)
	}
	var rep precomputeReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.KV != "nuq3" {
		t.Fatalf("precompute report %q: %v", r.stdout, err)
	}
	r = runCLI(t, context.Background(), "", false, "inspect", "--json", out)
	var ir inspectReport
	if err := json.Unmarshal([]byte(r.stdout), &ir); err != nil || r.code != 0 {
		t.Fatalf("inspect --json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	// Rows of 16 values: the per-token ranges alone cost 2 bits per value element.
	if ir.KV != "nuq3" || !(ir.BitsPerElement > 3 && ir.BitsPerElement < 8) || ir.KVQuant == nil || !ir.KVQuant.QNorm ||
		ir.KVQuant.Outliers != 0.02 || ir.KVQuant.Calibration != "fisher-scale" || ir.Tokens != rep.Tokens || ir.FileBytes != rep.FileBytes {
		t.Fatalf("inspect report %+v, kv_quant %+v", ir, ir.KVQuant)
	}
	for _, l := range ir.Layers {
		if !(l.KeyError > 0 && l.KeyError < 0.5) || !(l.ValueError > 0 && l.ValueError < 0.5) || l.KVBytes <= 0 {
			t.Errorf("layer %+v", l)
		}
	}
	r = runCLI(t, context.Background(), "", false, "inspect", out)
	if r.code != 0 || !strings.Contains(r.stdout, "bits per element") || !strings.Contains(r.stdout, "K error") {
		t.Errorf("inspect: exit %d\n%s", r.code, r.stdout)
	}
	askAtBudgets(t, model, out)
	// Bad settings are usage errors.
	for _, args := range [][]string{{"--kv", "nuq5"}, {"--kv", "nuq3", "--outliers", "0.6"}, {"--kv", "nuq3", "--kv-weighting", "x"}} {
		r = runCLI(t, context.Background(), "", false, append(append([]string{"precompute", "--model", model, "-o", out}, args...), in)...)
		if r.code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, r.code, exitUsage, r.stderr)
		}
	}
}

// askAtBudgets checks that ask answers 4 tokens from the artifact out, densely (budget
// 1) and squeezed (0.25).
func askAtBudgets(t *testing.T, model, out string) {
	t.Helper()
	for _, budget := range []string{"1", "0.25"} {
		r := runCLI(t, context.Background(), "", false, "ask", "--json", "--model", model, "--temp", "0", "-n", "4", "--budget", budget, out, "what does A return")
		if r.code != 0 {
			t.Fatalf("ask --budget %s: exit %d: %s", budget, r.code, r.stderr)
		}
		var ar askReport
		if err := json.Unmarshal([]byte(r.stdout), &ar); err != nil || len(ar.Tokens) != 4 {
			t.Fatalf("ask --budget %s: %v: %s", budget, err, r.stdout)
		}
	}
}
