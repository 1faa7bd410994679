// Package testfiles finds what tests read from outside their own package: the
// repository root (the directory holding go.mod) and the read-only reference data in
// ../shared beside it (models, evaluation text), which a checkout may lack.
package testfiles

import (
	"os"
	"path/filepath"
	"testing"
)

// Root returns the repository root, found by walking up from the working directory (a
// test runs in its package's directory). It fails the test when there is none.
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("testfiles: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Shared returns the path of elem under ../shared (beside the repository root), skipping
// the test with a message naming the file when it is absent.
func Shared(tb testing.TB, elem ...string) string {
	tb.Helper()
	p := filepath.Join(append([]string{Root(tb), "..", "shared"}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("reference file %s is absent (%v); it comes with the project's shared folder", filepath.Join(elem...), err)
	}
	return p
}
