package cmd

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestAskKVAppend: on a quantized artifact, ask with a query longer than
// --kv-append-after + 256 tokens quantizes the oldest 256 on append and reports them
// (and their memory, below f16's) in kv_append; --kv-append=false reports null; a
// --kv-append-after below 16 is a usage error.
func TestAskKVAppend(t *testing.T) {
	isolate(t)
	model, in := tinyModel(t), inputDir(t)
	out := filepath.Join(t.TempDir(), "ctx.sqz")
	r := runCLI(t, context.Background(), "", false, "precompute", "--model", model, "-o", out,
		"--window", "8", "--threads", "1", "--kv", "nuq3", in)
	if r.code != 0 {
		t.Fatalf("precompute exit %d: %s", r.code, r.stderr)
	}
	query := strings.Repeat("func f() int { return 1 } ", 40)
	ask := func(args ...string) (askReport, cliResult) {
		r := runCLI(t, context.Background(), "", false, append(append([]string{"ask", "--json", "--model", model, "--temp", "0", "-n", "3"}, args...), out, query)...)
		var ar askReport
		if r.code == 0 {
			if err := json.Unmarshal([]byte(r.stdout), &ar); err != nil {
				t.Fatalf("ask %v: %v: %s", args, err, r.stdout)
			}
		}
		return ar, r
	}
	ar, r := ask("--kv-append-after", "16")
	if r.code != 0 {
		t.Fatalf("ask: exit %d: %s", r.code, r.stderr)
	}
	if ar.PromptTokens <= 16+256 || len(ar.Tokens) < 2 {
		t.Fatalf("%d prompt and %d answer tokens: the test needs more", ar.PromptTokens, len(ar.Tokens))
	}
	kv := ar.KVAppend
	if kv == nil || kv.After != 16 || kv.Block != 256 || kv.Tokens == 0 || kv.Tokens%256 != 0 ||
		!(kv.Bytes > 0 && kv.Bytes < kv.F16Bytes) || kv.F16BytesPerToken*kv.Tokens != kv.F16Bytes {
		t.Fatalf("kv_append %+v", kv)
	}
	if ar, r = ask("--kv-append=false"); r.code != 0 || ar.KVAppend != nil {
		t.Fatalf("--kv-append=false: exit %d, kv_append %+v", r.code, ar.KVAppend)
	}
	if _, r = ask("--kv-append-after", "8"); r.code != exitUsage {
		t.Fatalf("--kv-append-after 8: exit %d, want %d", r.code, exitUsage)
	}
}
