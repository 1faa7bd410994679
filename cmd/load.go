package cmd

import (
	"fmt"

	"squeeze/runtime/gguf"
	"squeeze/runtime/model"
	"squeeze/runtime/tokenizer"
)

// loadedModel is a GGUF file with its model and tokenizer. The weights live in the file's
// memory: close the file only when done with the model.
type loadedModel struct {
	File      *gguf.File
	Model     *model.Model
	Tokenizer *tokenizer.Tokenizer
}

// loadModel opens the GGUF file at path (in huge pages if hugePages, see
// globalOptions.HugePages) and loads its model and tokenizer. Every failure is a
// *modelError (exit status 3) naming path. check, if not nil, runs on the opened file
// before the model is loaded (ask compares the artifact's model fingerprint there); its
// error is returned as is.
func loadModel(path string, hugePages bool, check func(*gguf.File) error) (lm *loadedModel, err error) {
	open := gguf.OpenMapped
	if hugePages {
		open = gguf.Open
	}
	f, err := open(path)
	if err != nil {
		return nil, &modelError{path, err}
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if check != nil {
		if err := check(f); err != nil {
			return nil, err
		}
	}
	m, err := model.Load(f)
	if err != nil {
		return nil, &modelError{path, err}
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		return nil, &modelError{path, err}
	}
	if m.Config.Vocab != tok.VocabSize() {
		return nil, &modelError{path, fmt.Errorf("%w: %d rows of token embeddings for %d tokens", model.ErrTensor, m.Config.Vocab, tok.VocabSize())}
	}
	return &loadedModel{File: f, Model: m, Tokenizer: tok}, nil
}
