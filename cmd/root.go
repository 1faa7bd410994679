package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

// streams are a command's input and outputs. Commands write only through them, never to
// os.Stdout, so tests can capture what they print.
type streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// globalOptions are the persistent flags every command shares, after configuration.
type globalOptions struct {
	// Threads is the number of threads for the matrix products; 0 means all cores.
	Threads int
	// JSON asks for one JSON object on stdout instead of human-readable output.
	JSON bool
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// ConfigFile is the config file named by --config or SQUEEZE_CONFIG ("" if none).
	ConfigFile string
	// HugePages copies a model of 8 MB or more into transparent huge pages
	// (gguf.Open); false keeps it in a shared file mapping (gguf.OpenMapped).
	HugePages bool

	// logger writes to stderr at LogLevel; set by configure.
	logger *slog.Logger
}

// runners lets tests replace a command's work function; a nil field means the real one.
type runners struct {
	generate func(ctx context.Context, opts *generateOptions, s streams) error
}

// helpTemplate is cobra's default help template followed by the exit statuses.
const helpTemplate = `{{with (or .Long .Short)}}{{. | trimTrailingWhitespaces}}

{{end}}{{if or .Runnable .HasSubCommands}}{{.UsageString}}{{end}}
` + exitStatusHelp

// Main runs squeeze with the process's arguments and standard streams and returns the
// exit status. The first SIGINT or SIGTERM cancels the running command, which stops
// cleanly; a second one kills the process.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore the default handlers: a second Ctrl-C terminates at once
	}()
	return execute(ctx, os.Args[1:], streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, runners{})
}

// execute runs the command line args and turns the outcome into an exit status,
// printing any error to s.Err.
func execute(ctx context.Context, args []string, s streams, run runners) int {
	root := newRootCommand(s, run)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		fmt.Fprintf(s.Err, "squeeze: %v\n", err)
		var usage *usageError
		if errors.As(err, &usage) && cmd != nil {
			fmt.Fprintf(s.Err, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return exitCode(err)
}

// newRootCommand builds the command tree.
func newRootCommand(s streams, run runners) *cobra.Command {
	g := &globalOptions{}
	v := viper.New()
	root := &cobra.Command{
		Use:   "squeeze",
		Short: "Precompute a fixed context once, then answer queries against it fast",
		Long: `squeeze makes applications with a large fixed context (a document set, a code
repository, a long system prompt) fast and small. It runs Llama-family language
models from GGUF files (the files llama.cpp and Ollama use) on the CPU, in pure Go.

  squeeze precompute -o ctx.sqz docs/     run the context through the model once and
                                          store its keys and values, quantized and
                                          indexed, in an artifact
  squeeze ask ctx.sqz "question"          answer a query, reading only the keys it
                                          needs, decoding with speculation
  squeeze serve ctx.sqz                   the same over an OpenAI-compatible HTTP API
  squeeze inspect ctx.sqz                 what an artifact holds, and its sizes
  squeeze eval --text corpus.txt          quality against dense attention
  squeeze generate "prompt"               plain generation, no fixed context

Configuration: every flag can also be set by an environment variable
SQUEEZE_<FLAG> (upper case, dashes as underscores: SQUEEZE_MAX_TOKENS=64) or by a
key in a config file (YAML, TOML or JSON by extension; keys are flag names:
"max-tokens: 64"). A flag on the command line wins over the environment, which
wins over the config file, which wins over the default. The config file is
--config FILE, or $XDG_CONFIG_HOME/squeeze/config.yaml (~/.config/squeeze/...
when XDG_CONFIG_HOME is unset) if that file exists.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.configure(cmd, v, s)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if sugg := cmd.SuggestionsFor(args[0]); len(sugg) > 0 {
				msg += "; did you mean " + strings.Join(sugg, " or ") + "?"
			}
			return usageErrorf("%s", msg)
		},
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.SetHelpTemplate(helpTemplate)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true

	pf := root.PersistentFlags()
	pf.IntVar(&g.Threads, "threads", 0, "threads for the matrix products (0 = all cores)")
	pf.BoolVar(&g.JSON, "json", false, "print one JSON object on stdout instead of text")
	pf.StringVar(&g.LogLevel, "log-level", "warn", "log to stderr at this level and above: debug, info, warn or error")
	pf.StringVar(&g.ConfigFile, "config", "", "read configuration from `FILE` (.yaml, .yml, .toml or .json)")
	pf.BoolVar(&g.HugePages, "huge-pages", true, "copy a model of 8 MB or more into transparent huge pages: faster decoding; false maps the file, so that processes share its memory")

	root.AddCommand(newVersionCommand(g, s))
	root.AddCommand(newGenerateCommand(g, s, run.generate))
	root.AddCommand(newAskCommand(g, s))
	root.AddCommand(newPrecomputeCommand(g, s))
	root.AddCommand(newInspectCommand(g, s))
	root.AddCommand(newEvalCommand(g, s))
	root.AddCommand(newServeCommand(g, s))
	return root
}

// exactArgs is cobra.ExactArgs with a usage error and a message of our own.
func exactArgs(n int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s (got %d arguments)", msg, len(args))
		}
		return nil
	}
}
