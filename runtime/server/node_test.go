package server

import (
	"context"
	"net"
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
	s, err := New(Config{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	m := *fixture.model
	if err := s.SetModels([]*Model{&m}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BASE_URL=http://"+ln.Addr().String(), "MODEL="+m.ID)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"ok":true`) {
		t.Fatalf("node client.mjs printed no success line:\n%s", out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
