package cmd

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"squeeze/runtime/testfiles"
)

// TestDocsCoverCLI keeps docs/cli.md in step with the command tree: every command, flag
// and JSON field must be mentioned there.
func TestDocsCoverCLI(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testfiles.Root(t), "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	root := newRootCommand(streams{}, runners{})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasParent() && !strings.Contains(doc, "## "+c.CommandPath()) {
			t.Errorf("docs/cli.md has no section %q", "## "+c.CommandPath())
		}
		for _, fs := range []*pflag.FlagSet{c.PersistentFlags(), c.LocalNonPersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if f.Name != "help" && !strings.Contains(doc, "`--"+f.Name) {
					t.Errorf("docs/cli.md does not document %s --%s", c.CommandPath(), f.Name)
				}
			})
		}
		for _, sub := range c.Commands() {
			if sub.Name() != "help" {
				walk(sub)
			}
		}
	}
	walk(root)
	for _, v := range []any{generateReport{}, versionInfo{}, askReport{}, precomputeReport{}, inspectReport{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if !strings.Contains(doc, "`"+name+"`") {
				t.Errorf("docs/cli.md does not document the JSON field %q of %s", name, typ.Name())
			}
		}
	}
}
