package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// apiError is an error a client receives, in the OpenAI shape:
// {"error":{"message","type","param","code"}}.
type apiError struct {
	Status  int    // HTTP status
	Message string // what went wrong and what to do about it
	Type    string // invalid_request_error, not_found_error, ...
	Param   string // the request field at fault, if any
	Code    string // a machine-readable code, if any
	// RetryAfter, if > 0, is sent as the Retry-After header, in seconds.
	RetryAfter int
}

func (e *apiError) Error() string { return e.Message }

// The error types of the OpenAI error shape that squeeze uses.
const (
	typeInvalidRequest = "invalid_request_error"
	typeNotFound       = "not_found_error"
	typeRateLimit      = "rate_limit_error"
	typeUnavailable    = "unavailable_error"
	typeServer         = "server_error"
)

// badRequest is a 400 about the request field param.
func badRequest(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Message: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON object an apiError is written as.
type errorBody struct {
	Error errorFields `json:"error"`
}

type errorFields struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// body returns the JSON form of e (param and code are null when empty).
func (e *apiError) body() errorBody {
	b := errorBody{Error: errorFields{Message: e.Message, Type: e.Type}}
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Code != "" {
		b.Error.Code = &e.Code
	}
	return b
}

// writeError sends e as the whole response.
func writeError(w http.ResponseWriter, e *apiError) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, e.Status, e.body())
}

// writeJSON sends v as a JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // the response types always marshal; keep the client informed anyway
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"internal error: cannot encode the response","type":"server_error","param":null,"code":null}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
