package tracer

// Unread is the number of bytes in the ring buffers not read yet; 0 means
// every event committed so far has been read.
func (t *Tracer) Unread() int { return t.rings.available() }
