package server

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Histogram bucket upper bounds.
var (
	ttftBuckets   = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	tokenBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1}
	budgetBuckets = []float64{0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1}
	durBuckets    = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}
)

// histogram is a Prometheus histogram: cumulative counts per upper bound, sum and count.
// Its methods are called with metrics.mu held.
type histogram struct {
	bounds []float64
	counts []uint64 // counts[i]: observations <= bounds[i] and > bounds[i-1]; last: above all
	sum    float64
	count  uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

// observe adds n observations of v.
func (h *histogram) observe(v float64, n uint64) {
	if n == 0 || math.IsNaN(v) {
		return
	}
	i, _ := slices.BinarySearch(h.bounds, v) // first bound >= v
	h.counts[i] += n
	h.sum += v * float64(n)
	h.count += n
}

// write prints the histogram's series in the text exposition format.
func (h *histogram) write(w io.Writer, name string) {
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, formatFloat(b), cum)
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, h.count)
	fmt.Fprintf(w, "%s_sum %s\n%s_count %d\n", name, formatFloat(h.sum), name, h.count)
}

// requestKey labels a request counter.
type requestKey struct {
	endpoint string
	status   int
}

// metrics are the server's counters and histograms, exposed on /metrics.
type metrics struct {
	mu               sync.Mutex
	requests         map[requestKey]uint64
	promptTokens     map[string]uint64 // by model
	completionTokens map[string]uint64
	stops            map[string]uint64 // generations by finish reason
	drafted          uint64            // speculation: drafted tokens verified
	accepted         uint64            // and accepted
	ttft             *histogram
	perToken         *histogram
	realized         *histogram
	duration         *histogram
	// meanService is a moving average of generation time in seconds (for Retry-After).
	meanService float64
}

func newMetrics() *metrics {
	return &metrics{
		requests:         map[requestKey]uint64{},
		promptTokens:     map[string]uint64{},
		completionTokens: map[string]uint64{},
		stops:            map[string]uint64{},
		ttft:             newHistogram(ttftBuckets),
		perToken:         newHistogram(tokenBuckets),
		realized:         newHistogram(budgetBuckets),
		duration:         newHistogram(durBuckets),
	}
}

// request counts a finished HTTP request.
func (m *metrics) request(endpoint string, status int) {
	m.mu.Lock()
	m.requests[requestKey{endpoint, status}]++
	m.mu.Unlock()
}

// generation records a finished generation's tokens and timings.
func (m *metrics) generation(o *outcome, model string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.promptTokens[model] += uint64(o.res.PromptTokens)
	m.completionTokens[model] += uint64(len(o.res.Tokens))
	m.stops[string(o.res.StopReason)]++
	m.drafted += uint64(o.res.Speculation.Drafted)
	m.accepted += uint64(o.res.Speculation.Accepted)
	if len(o.res.Tokens) > 0 {
		m.ttft.observe(o.ttft.Seconds(), 1)
	}
	if n := len(o.res.Tokens) - 1; n > 0 {
		// Every inter-token interval of the request, each taken as the request's mean.
		m.perToken.observe(o.res.DecodeDuration.Seconds()/float64(n), uint64(n))
	}
	if o.stats.Lookups > 0 || o.dense {
		m.realized.observe(o.realized(), 1)
	}
	d := o.generate.Seconds()
	m.duration.observe(d, 1)
	if m.meanService == 0 {
		m.meanService = d
	} else {
		m.meanService += 0.2 * (d - m.meanService)
	}
}

// serviceTime is the moving average of a generation's duration (0 before the first).
func (m *metrics) serviceTime() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Duration(m.meanService * float64(time.Second))
}

// gauges are the instantaneous values /metrics reports beside the counters.
type gauges struct {
	ready             bool
	queued, inFlight  int
	slots, queueLimit int
}

// write prints every metric in the Prometheus text exposition format (version 0.0.4).
func (m *metrics) write(out io.Writer, g gauges) error {
	w := bufio.NewWriter(out)
	m.mu.Lock()
	header := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	header("squeeze_requests_total", "counter", "HTTP requests by endpoint and status code (499: the client went away).")
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b requestKey) int {
		return cmp.Or(strings.Compare(a.endpoint, b.endpoint), cmp.Compare(a.status, b.status))
	})
	for _, k := range keys {
		fmt.Fprintf(w, "squeeze_requests_total{endpoint=\"%s\",status=\"%d\"} %d\n", escapeLabel(k.endpoint), k.status, m.requests[k])
	}
	for _, c := range []struct {
		name, label, help string
		values            map[string]uint64
	}{
		{"squeeze_prompt_tokens_total", "model", "Prompt (query) tokens processed, after the fixed context.", m.promptTokens},
		{"squeeze_completion_tokens_total", "model", "Tokens generated.", m.completionTokens},
		{"squeeze_generations_total", "reason", "Finished generations by stop reason (eos, stop, max_tokens, context_full, cancelled, error).", m.stops},
	} {
		header(c.name, "counter", c.help)
		for _, k := range slices.Sorted(maps.Keys(c.values)) {
			fmt.Fprintf(w, "%s{%s=\"%s\"} %d\n", c.name, c.label, escapeLabel(k), c.values[k])
		}
	}
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"squeeze_speculation_drafted_tokens_total", "Drafted tokens checked by verification passes (speculative decoding).", m.drafted},
		{"squeeze_speculation_accepted_tokens_total", "Drafted tokens accepted (plain greedy decoding produced them too).", m.accepted},
	} {
		header(c.name, "counter", c.help)
		fmt.Fprintf(w, "%s %d\n", c.name, c.v)
	}
	for _, h := range []struct {
		name, help string
		h          *histogram
	}{
		{"squeeze_time_to_first_token_seconds", "Time from the request's arrival (queueing included) to its first generated token.", m.ttft},
		{"squeeze_time_per_output_token_seconds", "Time between generated tokens (each request contributes its mean interval once per interval).", m.perToken},
		{"squeeze_realized_budget", "Per request: fraction of the fixed context's key reads that its lookups cost (1 = dense).", m.realized},
		{"squeeze_generation_duration_seconds", "Time a generation held a slot (prefill and decode).", m.duration},
	} {
		header(h.name, "histogram", h.help)
		h.h.write(w, h.name)
	}
	m.mu.Unlock()
	ready := 0
	if g.ready {
		ready = 1
	}
	for _, x := range []struct {
		name, help string
		v          int
	}{
		{"squeeze_ready", "1 when the models are loaded and requests are served.", ready},
		{"squeeze_queue_depth", "Requests waiting for a generation slot.", g.queued},
		{"squeeze_requests_in_flight", "Requests generating now.", g.inFlight},
		{"squeeze_slots", "Generation slots (requests that may generate at once).", g.slots},
		{"squeeze_queue_limit", "Most requests that may wait; more get 429.", g.queueLimit},
	} {
		header(x.name, "gauge", x.help)
		fmt.Fprintf(w, "%s %d\n", x.name, x.v)
	}
	return w.Flush()
}

// escapeLabel escapes a label value: backslash, double quote and newline.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// formatFloat prints a sample value as Prometheus parsers read it.
func formatFloat(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}
