package tracefile

import "testing"

// TestCreateFileDevNull: a recording written to /dev/null (or another file
// that cannot be synced) closes without error.
func TestCreateFileDevNull(t *testing.T) {
	w, err := CreateFile("/dev/null", Header{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}
