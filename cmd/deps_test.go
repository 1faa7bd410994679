package cmd

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestImportPolicy enforces the design's layering with `go list`: only cmd may use the
// CLI libraries, nothing but main imports cmd, the runtime imports nothing above it, and
// third-party code is limited to the allowed modules. This is a statement of policy: do
// not loosen it to make a build pass.
func TestImportPolicy(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "squeeze/...").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	cliOnly := []string{"github.com/spf13/cobra", "github.com/spf13/viper", "github.com/spf13/pflag", "github.com/schollz/progressbar"}
	allowed := []string{"golang.org/x/sys/", "gonum.org/v1/gonum/", "github.com/klauspost/compress/"}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg, imports := fields[0], fields[1:]
		inCmd := pkg == "squeeze/cmd" || strings.HasPrefix(pkg, "squeeze/cmd/")
		for _, imp := range imports {
			switch {
			case imp == "squeeze/cmd" && pkg != "squeeze":
				t.Errorf("%s imports squeeze/cmd: only main may", pkg)
			case strings.HasPrefix(pkg, "squeeze/runtime/") && !strings.HasPrefix(imp, "squeeze/runtime/") && strings.HasPrefix(imp, "squeeze/"):
				t.Errorf("%s imports %s: the runtime imports nothing above it", pkg, imp)
			case hasPrefixAny(imp, cliOnly):
				if !inCmd {
					t.Errorf("%s imports %s: CLI libraries belong in cmd", pkg, imp)
				}
			case strings.Contains(strings.Split(imp, "/")[0], ".") && !hasPrefixAny(imp, allowed):
				t.Errorf("%s imports %s, which is not an allowed dependency", pkg, imp)
			}
		}
	}
}

func hasPrefixAny(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
