package resolver

import (
	"io"
	"log/slog"
	"os"
)

func newTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func isRoot() bool { return os.Geteuid() == 0 }
