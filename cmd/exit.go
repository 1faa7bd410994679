package cmd

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Exit statuses. They are decided in one place, exitCode, and listed in every command's
// help (exitStatusHelp).
const (
	exitOK        = 0
	exitError     = 1   // any other failure
	exitUsage     = 2   // bad flags, arguments or configuration
	exitModel     = 3   // the model file or artifact is missing, unreadable, corrupt or unsupported
	exitCancelled = 130 // interrupted (Ctrl-C, SIGTERM), as shells report SIGINT
)

// exitStatusHelp is appended to every command's help.
const exitStatusHelp = `EXIT STATUS
  0    success
  1    failure not listed below
  2    usage error: bad flag, argument, environment variable or config file
  3    the model file or artifact is missing, unreadable, corrupt or of an unsupported kind
  130  interrupted (Ctrl-C or SIGTERM); output generated so far was written
`

// usageError marks an error in how squeeze was called: exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf returns a usageError with a formatted message.
func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// modelError marks a failure to open or load a model file: exit status 3.
type modelError struct {
	path string
	err  error
}

func (e *modelError) Error() string {
	msg := e.err.Error()
	if !strings.Contains(msg, e.path) {
		msg = e.path + ": " + msg
	}
	return "model: " + msg
}
func (e *modelError) Unwrap() error { return e.err }

// exitCode maps an error returned by a command to the process exit status.
func exitCode(err error) int {
	var usage *usageError
	var model *modelError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.Canceled):
		return exitCancelled
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &model):
		return exitModel
	}
	return exitError
}
