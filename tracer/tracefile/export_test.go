package tracefile

import "io"

// Test hooks that frame bytes as they are, with the writer's own framing, so
// tests and fuzzing reach the decoders behind the checksums.

// CreateRaw starts a recording whose header JSON is js, unchecked.
func CreateRaw(w io.Writer, js []byte) (*Writer, error) {
	return create(w, Header{}, js)
}

// WriteRaw appends payload, unchecked, as a record of kind k.
func (w *Writer) WriteRaw(k Kind, payload []byte) error {
	if err := w.check(); err != nil {
		return err
	}
	w.begin()
	w.e.b = append(w.e.b, payload...)
	return w.frame(k)
}

// FPIndexSlot is the slot of fingerprint fp in the writer's fingerprint index.
func FPIndexSlot(fp uint64) uint64 { return fpSlot(fp) }
