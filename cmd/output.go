package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"squeeze/runtime/decode"
)

// textOutput is where a generating command's answer goes: streamed to out as it is
// produced, or, with --json, held back for one JSON report at the end.
type textOutput struct {
	out             io.Writer
	json            bool
	endsWithNewline bool
}

// onText is the decode.Options.OnText that streams the text (nil with --json).
func (t *textOutput) onText() func(string) error {
	if t.json {
		return nil
	}
	return func(text string) error {
		t.endsWithNewline = strings.HasSuffix(text, "\n")
		_, err := io.WriteString(t.out, text)
		return err
	}
}

// finish prints report() as JSON (with --json, unless generation failed before it began)
// or ends the streamed text with a newline, and turns the generation error into the
// command's error: interrupted, or wrapped with the command's name.
func (t *textOutput) finish(ctx context.Context, res decode.Result, genErr error, command string, report func() any) error {
	if t.json {
		if res.StopReason == "" { // failed before generating: no report
			return genErr
		}
		enc := json.NewEncoder(t.out)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(report()); err != nil {
			return fmt.Errorf("write JSON: %w", err)
		}
	} else if res.Text != "" && !t.endsWithNewline {
		if _, err := io.WriteString(t.out, "\n"); err != nil && genErr == nil {
			genErr = err
		}
	}
	if genErr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d generated tokens: %w", len(res.Tokens), genErr)
		}
		return fmt.Errorf("%s: %w", command, genErr)
	}
	return nil
}
