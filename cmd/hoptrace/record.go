package main

import (
	"context"
	"errors"
	"io"
)

// runRecord is not implemented yet.
func runRecord(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("record: not implemented yet")
}
