// Package server is squeeze's HTTP API: an OpenAI-compatible server (POST
// /v1/completions and /v1/chat/completions, with server-sent-event streaming; GET
// /v1/models, /health and /metrics) over one or more squeezed fixed contexts.
//
// Every model (a GGUF model, its tokenizer and an artifact's context) is loaded once
// and shared read-only. Each request is its own query after the fixed context: it gets
// a sparse.Session at its budget and a small KV cache for its prompt and answer, and
// runs on one of Config.Parallel slots, each with its own thread pool. Requests beyond
// the slots wait in a queue of Config.Queue; beyond that they get 429 with Retry-After.
// A client that disconnects cancels its generation; Shutdown lets in-flight requests
// finish until its context ends, then cancels them.
//
// Errors take OpenAI's shape, {"error":{"message","type","param","code"}}: 4xx for
// requests to fix (the message says what), 5xx for internal failures, which are logged
// with the request id the X-Request-Id header carries. A panic in a request's goroutine
// is recovered and answered with 500.
package server
