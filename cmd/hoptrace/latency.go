package main

import (
	"context"
	"errors"
	"io"
)

// runLatency is not implemented yet.
func runLatency(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("latency: not implemented yet")
}
