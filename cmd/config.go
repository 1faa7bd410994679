package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// envPrefix is the prefix of the environment variables that configure squeeze.
const envPrefix = "SQUEEZE"

// defaultConfigPath returns $XDG_CONFIG_HOME/squeeze/config.yaml (on Linux; the
// platform's user config directory elsewhere), or "" when it cannot be determined.
func defaultConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "squeeze", "config.yaml")
}

// envName returns the environment variable for a flag: SQUEEZE_MAX_TOKENS for max-tokens.
func envName(flag string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// configure resolves the flags of cmd (its own and the inherited persistent ones) with
// the precedence command line > SQUEEZE_* environment > config file > default, then sets
// up the logger. It runs before every command.
func (g *globalOptions) configure(cmd *cobra.Command, v *viper.Viper, s streams) error {
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	flags := cmd.Flags()
	if err := v.BindPFlags(flags); err != nil {
		return fmt.Errorf("bind flags: %w", err)
	}

	// The config file itself comes from --config or SQUEEZE_CONFIG, else the default
	// location if a file is there.
	path := v.GetString("config")
	if path == "" {
		if def := defaultConfigPath(); def != "" {
			if _, err := os.Stat(def); err == nil {
				path = def
			} else if !errors.Is(err, fs.ErrNotExist) {
				return usageErrorf("config file %s: %w", def, err)
			}
		}
	}
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return usageErrorf("config file %s: %w", path, err)
		}
	}

	var errs []error
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" || !v.IsSet(f.Name) {
			return
		}
		if err := setFlag(f, v.Get(f.Name)); err != nil {
			from := "config file " + path
			if _, ok := os.LookupEnv(envName(f.Name)); ok {
				from = "environment variable " + envName(f.Name)
			}
			errs = append(errs, fmt.Errorf("invalid %s from %s: %w", f.Name, from, err))
		}
	})
	if len(errs) > 0 {
		return &usageError{errors.Join(errs...)}
	}

	level, err := parseLevel(g.LogLevel)
	if err != nil {
		return err
	}
	g.logger = slog.New(slog.NewTextHandler(s.Err, &slog.HandlerOptions{Level: level}))
	if path != "" {
		g.logger.Debug("read config file", "path", path)
		known := flagNames(cmd.Root())
		for _, key := range v.AllKeys() {
			if !known[key] {
				g.logger.Warn("unknown key in config file", "path", path, "key", key)
			}
		}
	}
	if g.Threads < 0 {
		return usageErrorf("--threads %d: want 0 (all cores) or more", g.Threads)
	}
	return nil
}

// setFlag gives an unset flag a value from the environment or a config file. A list
// (from a config file) sets a repeatable flag once per element.
func setFlag(f *pflag.Flag, val any) error {
	repeatable := strings.HasSuffix(f.Value.Type(), "Array") || strings.HasSuffix(f.Value.Type(), "Slice")
	var items []any
	switch x := val.(type) {
	case []any:
		items = x
	case []string:
		for _, s := range x {
			items = append(items, s)
		}
	default:
		return f.Value.Set(scalarString(val))
	}
	if !repeatable {
		return fmt.Errorf("%v is a list; --%s takes one value", val, f.Name)
	}
	for _, item := range items {
		if err := f.Value.Set(scalarString(item)); err != nil {
			return err
		}
	}
	return nil
}

// scalarString formats a config value as a command-line argument would spell it.
func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32)
	}
	return fmt.Sprint(v)
}

// flagNames returns the names of every flag of cmd and its subcommands.
func flagNames(cmd *cobra.Command) map[string]bool {
	names := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.PersistentFlags(), c.LocalFlags()} {
			fs.VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cmd)
	return names
}

// logLevels are the accepted --log-level values.
var logLevels = []string{"debug", "info", "warn", "error"}

// parseLevel turns a --log-level value into a slog level.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, usageErrorf("--log-level %q: want one of %s", s, strings.Join(logLevels, ", "))
}
