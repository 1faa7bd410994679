package cmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/model"
	"squeeze/runtime/testfiles"
)

// runAsSqueeze makes this test binary behave as the squeeze command when re-executed by
// TestGenerateMemory, so the child's peak RSS is squeeze's own.
const runAsSqueeze = "SQUEEZE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsSqueeze) == "1" {
		os.Exit(Main())
	}
	os.Exit(m.Run())
}

// TestGenerateMemory checks the memory bound: the peak RSS of `squeeze generate`
// on the F16 gocode-22m model stays below the model file's size + the KV cache + 64 MiB
// (the weights are memory-mapped, not copied into the heap).
func TestGenerateMemory(t *testing.T) {
	path := filepath.Join(testfiles.Root(t), "..", "shared", "models", "gocode-22m", "gocode-22m.gguf")
	st, err := os.Stat(path)
	if err != nil {
		t.Skipf("reference model absent (%v)", err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.Config
	f.Close()
	const ctxSize = 4096
	kvBytes := int64(cfg.Layers) * ctxSize * 2 * int64(cfg.KVDim()) * 2 // K and V, f16
	limit := st.Size() + kvBytes + 64<<20

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(self, "generate", "--model", path, "--temp", "0", "--max-tokens", "256",
		"--ctx-size", "4096", "--kv-cache", "f16", "--json", "func main() {")
	child.Env = append(os.Environ(), runAsSqueeze+"=1")
	out, err := child.CombinedOutput()
	if err != nil {
		t.Fatalf("squeeze generate: %v\n%s", err, out)
	}
	usage, ok := child.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Skip("no rusage on this system")
	}
	peak := usage.Maxrss * 1024 // kilobytes on Linux
	t.Logf("peak RSS %.1f MiB; limit %.1f MiB (file %.1f + KV cache %.1f + 64)",
		mib(peak), mib(limit), mib(st.Size()), mib(kvBytes))
	if peak > limit {
		t.Errorf("peak RSS %.1f MiB exceeds file + KV cache + 64 MiB = %.1f MiB", mib(peak), mib(limit))
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
