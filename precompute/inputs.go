package precompute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"squeeze/format"
)

// ErrNoInput means the inputs named no readable text document.
var ErrNoInput = errors.New("precompute: no input documents")

// ErrPattern means an include or exclude pattern is malformed.
var ErrPattern = errors.New("precompute: bad pattern")

// Document is one input text.
type Document struct {
	// Path names the document: the path as given or found under a directory (slash
	// separated), or "-" for standard input.
	Path string
	// Text is its content.
	Text string
}

// Skipped is an input file left out, and why.
type Skipped struct {
	Path, Reason string
}

// InputOptions select the files read from directories.
type InputOptions struct {
	// Include, if not empty, keeps only files found under a directory that match one of
	// these patterns; Exclude drops files and whole directories that match one. A pattern
	// (path.Match syntax) without a slash matches a file or directory's base name; one with
	// a slash matches its path relative to the directory named as input. Files named
	// directly as inputs are always read.
	Include, Exclude []string
	// Stdin is read for the input "-".
	Stdin io.Reader
}

// ReadInputs reads the documents that inputs name: files, directories (walked
// recursively in lexical order, skipping entries whose name starts with a dot), or "-" for
// opt.Stdin. Binary files (holding a NUL byte or invalid UTF-8) are skipped and reported,
// as are files found twice. The documents come in input order, each directory's files
// sorted, so the same inputs give the same documents.
func ReadInputs(ctx context.Context, inputs []string, opt InputOptions) ([]Document, []Skipped, error) {
	for _, p := range append(append([]string(nil), opt.Include...), opt.Exclude...) {
		if _, err := path.Match(p, ""); err != nil {
			return nil, nil, fmt.Errorf("%w %q: %v", ErrPattern, p, err)
		}
	}
	var docs []Document
	var skipped []Skipped
	seen := map[string]bool{}
	add := func(name, file string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := filepath.Clean(file)
		if seen[key] {
			skipped = append(skipped, Skipped{name, "listed twice"})
			return nil
		}
		seen[key] = true
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if why := binaryReason(data); why != "" {
			skipped = append(skipped, Skipped{name, why})
			return nil
		}
		docs = append(docs, Document{Path: name, Text: string(data)})
		return nil
	}
	for _, in := range inputs {
		if in == "-" {
			if opt.Stdin == nil {
				return nil, nil, fmt.Errorf("precompute: input \"-\": no standard input")
			}
			if seen["-"] {
				continue
			}
			seen["-"] = true
			data, err := io.ReadAll(opt.Stdin)
			if err != nil {
				return nil, nil, fmt.Errorf("precompute: read standard input: %w", err)
			}
			if why := binaryReason(data); why != "" {
				skipped = append(skipped, Skipped{"-", why})
				continue
			}
			docs = append(docs, Document{Path: "-", Text: string(data)})
			continue
		}
		info, err := os.Stat(in)
		if err != nil {
			return nil, nil, fmt.Errorf("precompute: %w", err)
		}
		if !info.IsDir() {
			if err := add(filepath.ToSlash(in), in); err != nil {
				return nil, nil, fmt.Errorf("precompute: %w", err)
			}
			continue
		}
		err = filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p == in {
				return nil
			}
			rel, err := filepath.Rel(in, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if strings.HasPrefix(d.Name(), ".") || matchAny(opt.Exclude, rel) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !d.Type().IsRegular() {
				return nil
			}
			if len(opt.Include) > 0 && !matchAny(opt.Include, rel) {
				return nil
			}
			return add(filepath.ToSlash(p), p)
		})
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, nil, ctxErr
			}
			return nil, nil, fmt.Errorf("precompute: %w", err)
		}
	}
	if len(docs) == 0 {
		return nil, skipped, fmt.Errorf("%w (%d inputs, %d files skipped)", ErrNoInput, len(inputs), len(skipped))
	}
	return docs, skipped, nil
}

// matchAny reports whether rel (a slash path) matches one of the patterns: patterns without
// a slash match its base name, others the whole path.
func matchAny(patterns []string, rel string) bool {
	for _, p := range patterns {
		target := rel
		if !strings.Contains(p, "/") {
			target = path.Base(rel)
		}
		if ok, _ := path.Match(p, target); ok {
			return true
		}
	}
	return false
}

// binaryReason says why data is not text, or returns "".
func binaryReason(data []byte) string {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return fmt.Sprintf("binary (NUL byte at offset %d)", i)
	}
	if !utf8.Valid(data) {
		return "binary (invalid UTF-8)"
	}
	return ""
}

// DefaultHeaderTemplate is the header put before each document; {path} is replaced by the
// document's path.
const DefaultHeaderTemplate = "==== {path} ====\n"

// Join joins the documents into one text: the system text (followed by a newline if it
// lacks one), then each document behind its header (template with {path} replaced by the
// document's path), each document ended by a newline if it lacks one. It returns where each
// document's content lies in the text.
func Join(docs []Document, template, system string) (string, []format.Document) {
	var b strings.Builder
	if system != "" {
		b.WriteString(system)
		if !strings.HasSuffix(system, "\n") {
			b.WriteByte('\n')
		}
	}
	spans := make([]format.Document, len(docs))
	for i, d := range docs {
		b.WriteString(strings.ReplaceAll(template, "{path}", d.Path))
		spans[i] = format.Document{Path: d.Path, Offset: b.Len(), Bytes: len(d.Text)}
		b.WriteString(d.Text)
		if d.Text != "" && !strings.HasSuffix(d.Text, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String(), spans
}
