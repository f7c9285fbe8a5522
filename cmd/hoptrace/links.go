package main

import (
	"context"
	"errors"
	"io"
)

// runLinks is not implemented yet.
func runLinks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("links: not implemented yet")
}
