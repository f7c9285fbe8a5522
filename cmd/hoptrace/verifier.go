package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
)

// explainVerifier turns an error that carries the kernel verifier's log
// (hundreds of lines) into one line: its first line, which names the
// program and the verifier's last words, and where the full log is. With
// path set, the full log is written there. Other errors are returned as
// they are.
func explainVerifier(err error, path string) error {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		return err
	}
	// The tracer appends the whole log after a newline.
	first, _, _ := strings.Cut(err.Error(), "\n")
	hint := "rerun with --verifier-log FILE for the verifier's full log"
	if path != "" {
		if werr := os.WriteFile(path, fmt.Appendf(nil, "%+v\n", ve), 0o644); werr != nil {
			hint = fmt.Sprintf("the full log could not be written: %v", werr)
		} else {
			hint = "the verifier's full log is in " + path
		}
	}
	return &verifierError{msg: first + " (" + hint + ")", err: err}
}

// verifierError is the one-line form of an error with a verifier log.
type verifierError struct {
	msg string
	err error
}

func (e *verifierError) Error() string { return e.msg }
func (e *verifierError) Unwrap() error { return e.err }
