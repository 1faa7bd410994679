// Command squeeze runs GGUF language models on the CPU. See README.md and docs/cli.md.
package main

import (
	"os"

	"squeeze/cmd"
)

func main() {
	os.Exit(cmd.Main())
}
