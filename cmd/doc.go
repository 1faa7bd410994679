// Package cmd is squeeze's command line: the cobra command tree, configuration from
// flags, SQUEEZE_* environment variables and a config file (one viper instance), output
// formatting and exit codes. It is the only package that reads flags, the environment or
// configuration files, or writes to the terminal.
//
// Every command is an options struct, a cobra command whose RunE copies flags into it,
// and a run function that does the work with injected output streams, so tests can call
// it directly.
package cmd
