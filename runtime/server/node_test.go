package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenAINodeClient runs testdata/openaiclient/client.mjs, which talks to the server
// with the official openai npm package: a chat completion, the same one streamed, a
// completion, the model list and a 404. .ci/run installs the package (npm ci).
func TestOpenAINodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the openai client test needs Node.js")
	}
	dir := filepath.Join("testdata", "openaiclient")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		t.Skip("the openai npm package is not installed: run npm ci --prefix runtime/server/testdata/openaiclient (.ci/run does)")
	}
	loadFixture(t)
	m := *fixture.model
	s := newServer(t, Config{Threads: 2}, &m)
	addr, served := serveLoopback(t, s)
	defer shutdown(t, s, served, 5*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BASE_URL=http://"+addr, "MODEL="+m.ID)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"ok":true`) {
		t.Fatalf("node client.mjs printed no success line:\n%s", out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
