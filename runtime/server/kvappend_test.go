package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"squeeze/runtime/kvquant"
	"squeeze/runtime/model/modeltest"
)

// TestKVAppend: with Config.KVAppendAfter, a request on a model with value datatypes
// whose prompt and answer run past KVAppendAfter + 256 tokens has its oldest 256
// quantized on append, as the "squeeze" extension reports; without the setting, or
// without datatypes, none. Bad settings are refused.
func TestKVAppend(t *testing.T) {
	loadFixture(t)
	nf3, _ := kvquant.NormalFloat(3)
	types := []kvquant.Datatype{nf3, nf3}
	quantized := *fixture.model
	quantized.ID, quantized.ValueTypes, quantized.ValueOutliers = "q", types, kvquant.DefaultOutliers
	plain := *fixture.model
	plain.ID = "p"
	const after = 16
	// A prompt past after + 256 tokens: the first decoding step moves tokens.
	ids := modeltest.Tokens(300, fixture.m.Config.Vocab, 4)
	for i := range ids {
		ids[i] = 3 + ids[i]%int32(fixture.m.Config.Vocab-3) // no BOS, EOS or unknown token
	}
	prompt, _ := json.Marshal(ids)
	run := func(cfg Config, id string) *squeezeInfo {
		cfg.Threads = 2
		ts := httptest.NewServer(newServer(t, cfg, &quantized, &plain).Handler())
		defer ts.Close()
		status, _, body := post(t, ts, "/v1/completions", `{"model":"`+id+`","prompt":`+string(prompt)+`,"max_tokens":100,"temperature":0}`)
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var r completionResponse
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		if ran := r.Usage.PromptTokens + r.Usage.CompletionTokens - 1; ran <= after+256 {
			t.Fatalf("%s: only %d tokens ran: the test needs more than %d", id, ran, after+256)
		}
		return r.Squeeze
	}
	if sq := run(Config{KVAppendAfter: after}, "q"); sq.KVAppended < 256 || sq.KVAppended%256 != 0 {
		t.Fatalf("kv_appended_tokens %d, want a positive multiple of 256", sq.KVAppended)
	}
	if sq := run(Config{}, "q"); sq.KVAppended != 0 {
		t.Fatalf("without KVAppendAfter: %d tokens appended", sq.KVAppended)
	}
	if sq := run(Config{KVAppendAfter: after}, "p"); sq.KVAppended != 0 {
		t.Fatalf("without value datatypes: %d tokens appended", sq.KVAppended)
	}
	if _, err := New(Config{KVAppendAfter: 5}); err == nil {
		t.Fatal("KVAppendAfter 5 accepted")
	}
	bad := quantized
	bad.ValueTypes = types[:1]
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetModels([]*Model{&bad}); err == nil {
		t.Fatal("one value datatype for two layers accepted")
	}
}
