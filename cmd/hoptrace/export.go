package main

import (
	"context"
	"errors"
	"io"
)

// runExport is not implemented yet.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("export: not implemented yet")
}
