package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"squeeze/runtime/earlyexit"
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/speculate"
)

// TestSpeculateEarly serves a model with an early-exit predictor: greedy requests that
// allow early drafts draft from it, every answer is plain greedy decoding's, and the slot
// keeps one policy per model and mode from one request to the next.
func TestSpeculateEarly(t *testing.T) {
	loadFixture(t)
	m := *fixture.model
	m.Predictor = earlyexit.Identity(1, fixture.m.Config.Dim)
	s := newServer(t, Config{Threads: 2, Parallel: 1}, &m)
	s.policy = speculate.PolicyOptions{MinGain: -1} // draft at every pass
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	const prompt = " the quick brown fox jumps over the lazy"
	want := reference(t, fixture.tok.EncodeWithSpecials(prompt, false, true), 0.3, 16, nil)
	for i, tc := range []struct {
		mode   string
		drafts bool // the mode has a source that drafts at every pass
	}{
		{"early", true}, {"auto", true}, {"ngram", false}, {"off", false}, {"early", true}, {"auto", true},
	} {
		status, _, body := post(t, ts, "/v1/completions",
			`{"model":"tiny","prompt":"`+prompt+`","max_tokens":16,"temperature":0,"speculate":"`+tc.mode+`"}`)
		var r completionResponse
		if err := json.Unmarshal(body, &r); status != http.StatusOK || err != nil {
			t.Fatalf("request %d (%s): status %d: %s", i, tc.mode, status, body)
		}
		if r.Choices[0].Text != viaJSON(want.Text) {
			t.Fatalf("request %d (%s): %q, want plain decoding's %q", i, tc.mode, r.Choices[0].Text, want.Text)
		}
		if tc.drafts && r.Squeeze.Drafted == 0 || tc.mode == "off" && r.Squeeze.Drafted != 0 {
			t.Errorf("request %d (%s): %d tokens drafted", i, tc.mode, r.Squeeze.Drafted)
		}
	}
	policies := s.sched.slots[0].policies
	if len(policies) != 3 {
		t.Fatalf("the slot has %d policies, want one per model and mode that speculates (3)", len(policies))
	}
	for _, mode := range []speculate.Mode{speculate.ModeEarly, speculate.ModeAuto} {
		p := policies[policyKey{&m, mode}]
		if p == nil {
			t.Fatalf("no policy for %s", mode)
		}
		var names []string
		for _, d := range p.Drafters() {
			names = append(names, d.Name())
		}
		if !slices.Contains(names, earlyexit.DrafterName) {
			t.Errorf("%s policy drafts from %q, want the early exit too", mode, names)
		}
	}
}

// TestPredictorRefused checks that SetModels refuses a predictor that does not fit the
// model.
func TestPredictorRefused(t *testing.T) {
	loadFixture(t)
	m := *fixture.model
	m.Predictor = earlyexit.Identity(fixture.m.Config.Layers, fixture.m.Config.Dim) // no layer left to verify
	s, err := New(Config{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetModels([]*Model{&m}); !errors.Is(err, earlyexit.ErrPredictor) {
		t.Fatalf("SetModels: %v, want earlyexit.ErrPredictor", err)
	}
}

// TestSpeculatePipeline serves a parameter-shared model (4 layers cycling through 2
// blocks): greedy requests that allow early drafts decode with the pipelined form and
// answer exactly what plain decoding answers; "off", sampling and "ngram" do not use it.
func TestSpeculatePipeline(t *testing.T) {
	loadFixture(t)
	spec := testSpec
	spec.Layers, spec.BlockShare = 4, 2
	m, f, tok := testmodel.Spec(t, spec)
	ctx, err := squeezeContext(m, f, tok)
	if err != nil {
		t.Fatal(err)
	}
	served := &Model{ID: "shared", Model: m, Tokenizer: tok, Context: ctx, Budget: 0.3}
	s := newServer(t, Config{Threads: 2, Parallel: 1}, served)
	if served.BlockShare != 2 {
		t.Fatalf("SetModels found %d blocks, want 2", served.BlockShare)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	const prompt = " the quick brown fox jumps over the lazy"
	answer := func(mode, sampling string) completionResponse {
		t.Helper()
		status, _, body := post(t, ts, "/v1/completions",
			`{"model":"shared","prompt":"`+prompt+`","max_tokens":24,`+sampling+`,"speculate":"`+mode+`"}`)
		var r completionResponse
		if err := json.Unmarshal(body, &r); status != http.StatusOK || err != nil {
			t.Fatalf("%s: status %d: %s", mode, status, body)
		}
		return r
	}
	plain := answer("off", `"temperature":0`)
	if plain.Squeeze.Speculate != "off" {
		t.Errorf("off: decoded by %q", plain.Squeeze.Speculate)
	}
	for _, mode := range []string{"auto", "early", "auto"} {
		r := answer(mode, `"temperature":0`)
		if r.Squeeze.Speculate != "pipeline" {
			t.Errorf("%s: decoded by %q, want the pipelined form", mode, r.Squeeze.Speculate)
		}
		if r.Choices[0].Text != plain.Choices[0].Text {
			t.Fatalf("%s: %q, want plain decoding's %q", mode, r.Choices[0].Text, plain.Choices[0].Text)
		}
	}
	if r := answer("ngram", `"temperature":0`); r.Squeeze.Speculate != "ngram" {
		t.Errorf("ngram: decoded by %q, want the n-gram policy", r.Squeeze.Speculate)
	}
	if r := answer("auto", `"temperature":0.8,"seed":7`); r.Squeeze.Speculate == "pipeline" {
		t.Errorf("sampling: decoded by the pipelined form, which is greedy only")
	}
}
