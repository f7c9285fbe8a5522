package main

import (
	"context"
	"errors"
	"io"
)

// runTrace is not implemented yet.
func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("trace: not implemented yet")
}
