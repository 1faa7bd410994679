package hierarchy

import "errors"

// ErrInvalid is wrapped by errors for bad arguments to Build or Calibrate.
var ErrInvalid = errors.New("hierarchy: invalid input")
