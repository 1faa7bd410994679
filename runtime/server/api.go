package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"squeeze/runtime/chat"
	"squeeze/runtime/sample"
	"squeeze/runtime/speculate"
)

// Sampling defaults for fields a request leaves out: llama.cpp's server defaults, which
// are also squeeze ask's.
const (
	DefaultTemperature = 0.8
	DefaultTopK        = 40
	DefaultTopP        = 0.95
	DefaultMinP        = 0.05
)

// MaxStops is the most stop strings a request may give.
const MaxStops = 16

// commonParams are the request fields /v1/completions and /v1/chat/completions share,
// including squeeze's extensions (budget, speculate) and llama.cpp's sampling fields
// (top_k, min_p, repeat_penalty). Fields a request leaves out are nil.
type commonParams struct {
	Model            string          `json:"model"`
	MaxTokens        *int            `json:"max_tokens"`
	Temperature      *float64        `json:"temperature"`
	TopP             *float64        `json:"top_p"`
	TopK             *int            `json:"top_k"`
	MinP             *float64        `json:"min_p"`
	RepeatPenalty    *float64        `json:"repeat_penalty"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	Seed             *int64          `json:"seed"`
	N                *int            `json:"n"`
	Stop             json.RawMessage `json:"stop"`
	Stream           *bool           `json:"stream"`
	StreamOptions    *streamOptions  `json:"stream_options"`
	Budget           *float64        `json:"budget"`
	Speculate        *string         `json:"speculate"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	commonParams
	Prompt   json.RawMessage `json:"prompt"`
	Echo     *bool           `json:"echo"`
	BestOf   *int            `json:"best_of"`
	Logprobs *int            `json:"logprobs"`
	Suffix   *string         `json:"suffix"`
}

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	commonParams
	Messages            []chatMessage   `json:"messages"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Logprobs            *bool           `json:"logprobs"`
	Tools               json.RawMessage `json:"tools"`
	ResponseFormat      *struct {
		Type string `json:"type"`
	} `json:"response_format"`
}

// chatMessage is one message of a chat request; Content is a string, null, or an array
// of content parts.
type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// contentPart is one element of an array content.
type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// genParams are a request's validated generation settings.
type genParams struct {
	model        string
	maxTokens    int // 0: not given
	sampling     sample.Options
	stop         []string
	stream       bool
	includeUsage bool
	budget       float64 // 0: not given (the model's default)
	speculate    string  // "" when not given
	// speculateMode is the parsed speculate field.
	speculateMode speculate.Mode
}

// decodeBody reads r's body (at most limit bytes, within timeout) as one JSON object
// into v.
func decodeBody(r *http.Request, w http.ResponseWriter, limit int64, timeout time.Duration, v any) *apiError {
	// The deadline covers the body only: a client that sends it slowly does not hold a
	// goroutine for ever, and the response (a long stream) has none.
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(timeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if deadline && err == nil {
		rc.SetReadDeadline(time.Time{})
	}
	if err != nil { // the connection is not reused: the server does not wait for the rest
		w.Header().Set("Connection", "close")
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return &apiError{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest,
				Message: fmt.Sprintf("request body larger than %d bytes: shorten the prompt", tooBig.Limit)}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return &apiError{Status: http.StatusRequestTimeout, Type: typeInvalidRequest,
				Message: fmt.Sprintf("the request body did not arrive within %v: send it at once", timeout)}
		}
		return badRequest("", "cannot read the request body: %v", err)
	}
	return parseJSON(body, v)
}

// parseJSON decodes body, which must hold exactly one JSON object, into v, and turns
// decoding errors into messages that say where the problem is.
func parseJSON(body []byte, v any) *apiError {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return badRequest("", "the request body is empty: send a JSON object")
	}
	if trimmed[0] != '{' {
		return badRequest("", "the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax):
			return badRequest("", "malformed JSON at byte %d: %v", syntax.Offset, err)
		case errors.As(err, &typ):
			field := strings.TrimPrefix(typ.Field, "commonParams.")
			if field == "" {
				return badRequest("", "malformed request: JSON %s where %s was expected", typ.Value, typ.Type)
			}
			return badRequest(field, "field %s: JSON %s where %s was expected", field, typ.Value, jsonKind(typ.Type.String()))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("", "malformed JSON: the body ends inside the object")
		}
		return badRequest("", "malformed JSON: %v", err)
	}
	if dec.InputOffset() != int64(len(trimmed)) {
		return badRequest("", "malformed JSON: data after the object")
	}
	return nil
}

// jsonKind names a Go type of the request structs as a JSON kind.
func jsonKind(goType string) string {
	t := strings.TrimPrefix(goType, "*")
	switch {
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	}
	return "an object"
}

// params validates the shared fields and returns the generation settings.
func (c *commonParams) params() (*genParams, *apiError) {
	p := &genParams{model: c.Model}
	so := sample.Options{Temperature: DefaultTemperature, TopK: DefaultTopK, TopP: DefaultTopP, MinP: DefaultMinP, RepeatPenalty: 1}
	if c.MaxTokens != nil {
		if *c.MaxTokens < 1 {
			return nil, badRequest("max_tokens", "max_tokens %d: want 1 or more", *c.MaxTokens)
		}
		p.maxTokens = *c.MaxTokens
	}
	if c.Temperature != nil {
		t := *c.Temperature
		if !(t >= 0 && t <= 2) {
			return nil, badRequest("temperature", "temperature %g: want a value from 0 (greedy) to 2", t)
		}
		so.Temperature = float32(t)
	}
	if c.TopP != nil {
		tp := *c.TopP
		if !(tp >= 0 && tp <= 1) {
			return nil, badRequest("top_p", "top_p %g: want a value from 0 to 1", tp)
		}
		so.TopP = float32(tp)
		if tp == 0 { // only the most likely token survives: greedy
			so.Temperature = 0
		}
	}
	if c.TopK != nil {
		if *c.TopK < 0 {
			return nil, badRequest("top_k", "top_k %d: want 0 (all tokens) or more", *c.TopK)
		}
		so.TopK = *c.TopK
	}
	if c.MinP != nil {
		mp := *c.MinP
		if !(mp >= 0 && mp <= 1) {
			return nil, badRequest("min_p", "min_p %g: want a value from 0 to 1", mp)
		}
		so.MinP = float32(mp)
	}
	if c.RepeatPenalty != nil {
		rp := *c.RepeatPenalty
		if !(rp >= 0 && rp <= 10) {
			return nil, badRequest("repeat_penalty", "repeat_penalty %g: want a value from 0 to 10 (1 = off)", rp)
		}
		so.RepeatPenalty = float32(rp)
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"presence_penalty", c.PresencePenalty}, {"frequency_penalty", c.FrequencyPenalty}} {
		if f.v != nil && *f.v != 0 {
			return nil, badRequest(f.name, "%s is not supported: leave it out or 0 (repeat_penalty is)", f.name)
		}
	}
	if c.Seed != nil {
		so.Seed = uint64(*c.Seed)
	} else {
		so.Seed = randomSeed()
	}
	if c.N != nil && *c.N != 1 {
		return nil, badRequest("n", "n %d: only 1 choice per request is supported", *c.N)
	}
	stop, e := parseStop(c.Stop)
	if e != nil {
		return nil, e
	}
	p.stop = stop
	if c.Stream != nil {
		p.stream = *c.Stream
	}
	if c.StreamOptions != nil {
		if !p.stream {
			return nil, badRequest("stream_options", "stream_options is only allowed with stream: true")
		}
		p.includeUsage = c.StreamOptions.IncludeUsage
	}
	if c.Budget != nil {
		b := *c.Budget
		if !(b > 0) || math.IsInf(b, 0) {
			return nil, badRequest("budget", "budget %g: want a fraction of the context's keys > 0 (1 or more = dense)", b)
		}
		p.budget = b
	}
	if c.Speculate != nil {
		mode, err := speculate.ParseMode(*c.Speculate)
		if err != nil {
			return nil, badRequest("speculate", "speculate %q: want one of %s", *c.Speculate, strings.Join(speculate.Modes, ", "))
		}
		p.speculate, p.speculateMode = *c.Speculate, mode
	}
	p.sampling = so
	if err := so.Validate(); err != nil {
		return nil, badRequest("", "sampling settings: %v", err)
	}
	return p, nil
}

// parseStop reads the stop field: null, a string, or an array of strings.
func parseStop(raw json.RawMessage) ([]string, *apiError) {
	if isNull(raw) {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badRequest("stop", "stop: want a string or an array of strings")
	}
	if len(list) > MaxStops {
		return nil, badRequest("stop", "stop has %d strings: at most %d are allowed", len(list), MaxStops)
	}
	var out []string
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// isNull reports whether a raw field is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// promptInput is a completion prompt: text, or token ids.
type promptInput struct {
	text   string
	tokens []int32
	isIDs  bool
}

// parsePrompt reads the prompt field: a string, an array of one string, or an array of
// token ids (or an array of one such array).
func parsePrompt(raw json.RawMessage) (promptInput, *apiError) {
	if isNull(raw) {
		return promptInput{}, badRequest("prompt", "prompt is required: the text that follows the model's fixed context")
	}
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		return promptInput{text: text}, nil
	}
	var texts []string
	if err := json.Unmarshal(raw, &texts); err == nil {
		if len(texts) != 1 {
			return promptInput{}, badRequest("prompt", "prompt has %d strings: send one prompt per request", len(texts))
		}
		return promptInput{text: texts[0]}, nil
	}
	var ids []int32
	if err := json.Unmarshal(raw, &ids); err == nil {
		return promptInput{tokens: ids, isIDs: true}, nil
	}
	var idLists [][]int32
	if err := json.Unmarshal(raw, &idLists); err == nil {
		if len(idLists) != 1 {
			return promptInput{}, badRequest("prompt", "prompt has %d token arrays: send one prompt per request", len(idLists))
		}
		return promptInput{tokens: idLists[0], isIDs: true}, nil
	}
	return promptInput{}, badRequest("prompt", "prompt: want a string, an array of one string, or an array of token ids")
}

// chatRoles maps the roles a request may use to the role a template sees.
var chatRoles = map[string]string{
	"system": chat.RoleSystem, "developer": chat.RoleSystem, "user": chat.RoleUser, "assistant": chat.RoleAssistant,
}

// parseMessages validates the messages of a chat request.
func parseMessages(msgs []chatMessage) ([]chat.Message, *apiError) {
	if len(msgs) == 0 {
		return nil, badRequest("messages", "messages is required: a non-empty array of {role, content}")
	}
	out := make([]chat.Message, len(msgs))
	for i, m := range msgs {
		param := fmt.Sprintf("messages[%d]", i)
		role, ok := chatRoles[m.Role]
		if !ok {
			return nil, badRequest(param+".role", "%s.role %q: want system, developer, user or assistant", param, m.Role)
		}
		content, e := parseContent(m.Content, param+".content")
		if e != nil {
			return nil, e
		}
		out[i] = chat.Message{Role: role, Content: content}
	}
	return out, nil
}

// parseContent reads a message's content: a string, null (empty), or an array of text
// parts, which are joined.
func parseContent(raw json.RawMessage, param string) (string, *apiError) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []contentPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", badRequest(param, "%s: want a string or an array of {type: \"text\", text} parts", param)
	}
	var b strings.Builder
	for j, p := range parts {
		if p.Type != "text" {
			return "", badRequest(param, "%s[%d]: part type %q is not supported: only text", param, j, p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}
