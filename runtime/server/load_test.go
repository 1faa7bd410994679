package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"squeeze/precompute"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/speculate"
)

// Load test shape: clients x requests each, queries of loadQuery tokens from the
// evaluation text, answers of at most loadAnswer tokens, after a loadContext-token
// fixed context.
const (
	loadClients = 16
	loadPerCli  = 50
	loadContext = 4096
	loadQuery   = 32
	loadAnswer  = 16
)

// TestLoadGocode is the load test of issue 6: 16 concurrent clients x 50 streamed
// completions over loopback HTTP against gocode-22m with a 4096-token context from
// eval/dev.txt. It reports failed requests (there must be none), time to first token
// (client side: request sent to first text event; server side: queueing and prefill),
// throughput, and the process's RSS before, midway and after (memory must stay flat).
//
//	go test ./runtime/server -run LoadGocode -v
func TestLoadGocode(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: go test ./runtime/server -run LoadGocode -v")
	}
	m, f, tok := testmodel.Shared(t, "gocode-22m")
	tokens := tok.Encode(testmodel.DevText(t), true)
	if len(tokens) < loadContext+loadQuery*64 {
		t.Skipf("dev.txt has %d tokens: too few", len(tokens))
	}
	start := time.Now()
	pool := kernels.NewPool(0)
	sq, err := precompute.Squeeze(context.Background(), m, f, pool, tokens[:loadContext], precompute.SqueezeOptions{Seed: 1})
	pool.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("squeezed %d context tokens in %v (budget %g)", loadContext, time.Since(start).Round(time.Millisecond), sq.Budget)

	s := newServer(t, Config{Queue: loadClients * 2, Cache: model.CacheF16, Speculate: speculate.ModeAuto},
		&Model{ID: "gocode", Model: m, Tokenizer: tok, Context: sq.Context, Budget: sq.Budget})
	addr, served := serveLoopback(t, s)
	url := "http://" + addr + "/v1/completions"

	// The queries: consecutive pieces of the text after the context.
	var queries []string
	for lo := loadContext; lo+loadQuery <= len(tokens) && len(queries) < loadClients*loadPerCli; lo += loadQuery {
		queries = append(queries, tok.Decode(tokens[lo:lo+loadQuery]))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: loadClients}}
	run := func(q string) (res loadResult) {
		body, _ := json.Marshal(map[string]any{"model": "gocode", "prompt": q, "max_tokens": loadAnswer, "temperature": 0,
			"stream": true, "stream_options": map[string]bool{"include_usage": true}})
		sent := time.Now()
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			res.err = err.Error()
			return res
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			res.err = "status " + strconv.Itoa(resp.StatusCode)
			return res
		}
		sc := bufio.NewScanner(resp.Body)
		done := false
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			if data == "[DONE]" {
				done = true
				break
			}
			var c completionResponse
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				res.err = "bad event: " + data
				return res
			}
			if len(c.Choices) > 0 && c.Choices[0].Text != "" && res.ttft == 0 {
				res.ttft = time.Since(sent)
			}
			if c.Squeeze != nil {
				res.serverTTFT = time.Duration(c.Squeeze.TTFTMS * float64(time.Millisecond))
				res.prefill = res.serverTTFT - time.Duration(c.Squeeze.QueueMS*float64(time.Millisecond))
			}
			if c.Usage != nil {
				res.tokens = c.Usage.CompletionTokens
			}
		}
		if !done {
			res.err = "stream ended without [DONE]"
		}
		if res.ttft == 0 { // no text (an immediate end of turn): first token at the end
			res.ttft = time.Since(sent)
		}
		return res
	}

	// Warm up, then measure.
	for _, q := range queries[:4] {
		if r := run(q); r.err != "" {
			t.Fatalf("warm-up request: %s", r.err)
		}
	}
	rssBefore := rss(t)
	var done atomic.Int64
	var rssMid int64
	var midOnce sync.Once
	results := make([]loadResult, loadClients*loadPerCli)
	var wg sync.WaitGroup
	begin := time.Now()
	for c := range loadClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range loadPerCli {
				k := c*loadPerCli + i
				results[k] = run(queries[k%len(queries)])
				if done.Add(1) == int64(len(results)/2) {
					midOnce.Do(func() { rssMid = rss(t) })
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(begin)
	runtime.GC()
	rssAfter := rss(t)

	var failures []string
	var ttft, serverTTFT, prefill []time.Duration
	total := 0
	for _, r := range results {
		if r.err != "" {
			failures = append(failures, r.err)
			continue
		}
		ttft, serverTTFT, prefill = append(ttft, r.ttft), append(serverTTFT, r.serverTTFT), append(prefill, r.prefill)
		total += r.tokens
	}
	slices.Sort(ttft)
	slices.Sort(serverTTFT)
	slices.Sort(prefill)
	t.Logf("%d clients x %d requests (query %d tokens, max_tokens %d, context %d, parallel %d, %d threads per slot): %d failed",
		loadClients, loadPerCli, loadQuery, loadAnswer, loadContext, len(s.sched.slots), s.sched.threads, len(failures))
	if len(ttft) > 0 {
		t.Logf("TTFT client p50 %v p99 %v; server (queue + prefill) p50 %v p99 %v; prefill alone p50 %v p99 %v",
			pct(ttft, 50), pct(ttft, 99), pct(serverTTFT, 50), pct(serverTTFT, 99), pct(prefill, 50), pct(prefill, 99))
	}
	t.Logf("throughput %.1f generated tokens/s (%d tokens in %v), %.2f requests/s",
		float64(total)/wall.Seconds(), total, wall.Round(time.Millisecond), float64(len(results)-len(failures))/wall.Seconds())
	t.Logf("RSS before %d MiB, midway %d MiB, after %d MiB", rssBefore>>20, rssMid>>20, rssAfter>>20)

	shutdown(t, s, served, 10*time.Second)
	if len(failures) > 0 {
		t.Errorf("%d failed requests, first: %s", len(failures), failures[0])
	}
	// Flat memory: the second half of the run adds no more than noise.
	if grow := rssAfter - rssMid; grow > 64<<20 {
		t.Errorf("RSS grew by %d MiB in the second half of the run", grow>>20)
	}
}

// loadResult is one load-test request's outcome.
type loadResult struct {
	err        string
	ttft       time.Duration
	serverTTFT time.Duration
	prefill    time.Duration // server TTFT without the queueing
	tokens     int
}

// pct returns the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))].Round(100 * time.Microsecond)
}

// rss returns the process's resident set size from /proc (0 where there is none).
func rss(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err != nil {
				t.Logf("VmRSS %q: %v", v, err)
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
