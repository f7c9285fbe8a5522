package main

import (
	"context"
	"errors"
	"io"
)

// runCleanup is not implemented yet.
func runCleanup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("cleanup: not implemented yet")
}
