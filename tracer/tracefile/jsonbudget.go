package tracefile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"unicode/utf8"

	"github.com/hoptrace/hoptrace/resolver/topology"
)

// The header and the snapshots are JSON, decoded with encoding/json, which
// allocates per element, not per byte: {} is 3 bytes of a snapshot but a
// 136-byte topology.Endpoint, and an array grown one element at a time
// allocates about five times its final size. 32 MiB of {"endpoints":[{},...]}
// took 7.3 GB.
//
// So before decoding, a walk over the JSON, guided by the Go type it fills,
// adds up what encoding/json will allocate (element arrays, pointed-to
// structs, strings) without allocating anything itself, and refuses JSON
// that would take more than jsonPerByte bytes per byte of it plus jsonSlack.
// The walk also refuses, before any decoding, what encoding/json would only
// report at the end and pay an allocation for at every occurrence (a string
// where a number belongs, a number out of range), and what no writer
// produces (a field twice, an escaped key). The top-level arrays are then
// made at their final length, so a big snapshot costs no regrowth.
const (
	// jsonPerByte is how many bytes decoding may allocate per byte of JSON.
	// Snapshots written by hoptrace are charged about 2.3 (TestJSONEstimate)
	// and take about 1.4.
	jsonPerByte = 4
	// jsonSlack is allowed beside, for small JSON.
	jsonSlack = 4 << 10
)

var (
	headerJSON   = jsonTypeFor(reflect.TypeFor[Header]())
	snapshotJSON = jsonTypeFor(reflect.TypeFor[topology.Snapshot]())
)

// decodeJSON decodes js into v, a pointer to the struct that t describes,
// if that takes at most jsonPerByte*len(js)+jsonSlack bytes.
func decodeJSON(js []byte, v any, t *jsonType) error {
	if t.err != nil {
		return t.err
	}
	w := jsonWalk{js: js, budget: jsonPerByte*int64(len(js)) + jsonSlack}
	var counts [64]int // length of each top-level array field; 0: absent or empty
	w.counts = counts[:len(t.fields)]
	if err := w.walk(t); err != nil {
		if !errors.Is(err, errJSONSyntax) {
			return err
		}
		// Not JSON: encoding/json says why, and checks the whole syntax
		// before it decodes (allocates) anything.
		if jerr := json.Unmarshal(js, &struct{}{}); jerr != nil {
			return jerr
		}
		return fmt.Errorf("size the JSON: %w", err) // JSON the walk misread: refuse rather than decode unbounded
	}
	return decodeMade(js, v, t, w.counts)
}

// decodeMade decodes js into v after making its top-level array fields at
// their lengths (counts, by field): encoding/json appends to the slice it
// finds, so they never regrow.
func decodeMade(js []byte, v any, t *jsonType, counts []int) error {
	rv := reflect.ValueOf(v).Elem()
	for i, f := range t.fields {
		if counts[i] > 0 {
			rv.Field(f.index).Set(reflect.MakeSlice(f.typ.rt, 0, counts[i]))
		}
	}
	return json.Unmarshal(js, v)
}

// errJSONSyntax: the walk met something that is not JSON.
var errJSONSyntax = errors.New("not JSON")

// jsonWalk adds up what decoding a JSON text into a Go type allocates. It
// never allocates itself, and is safe on any input: what is not JSON ends it
// with errJSONSyntax.
type jsonWalk struct {
	js     []byte
	off    int
	cost   int64 // bytes decoding allocates, before rounding to size classes
	budget int64
	field  string // the field being walked, for messages
	depth  int    // nesting of the value being walked
	deep   int    // deepest nesting seen
	counts []int  // top-level array lengths, by field
}

func (w *jsonWalk) walk(t *jsonType) error {
	switch w.peek() {
	case 'n':
		return w.literal() // null: decodes to nothing
	case '{':
	default:
		return w.mismatch(t)
	}
	if err := w.object(t, true); err != nil {
		return err
	}
	// encoding/json keeps one parser state per nesting level.
	return w.charge(appendCost(w.deep, 8))
}

func (w *jsonWalk) errorf(format string, args ...any) error {
	return fmt.Errorf("%s at JSON byte %d", fmt.Sprintf(format, args...), w.off)
}

// charge adds n bytes, and fails once they pass the budget. A quarter more
// is for rounding to size classes: an array of pointerful elements needs 8
// bytes more than its elements, which can take it to the next class
// (32 KiB + 8 takes 40 KiB).
func (w *jsonWalk) charge(n int64) error {
	w.cost += n
	if w.cost+w.cost/4 > w.budget {
		return w.errorf("%d bytes of JSON would take more than %d bytes to decode (%d per byte, plus %d): too many elements for their size",
			len(w.js), w.budget, jsonPerByte, jsonSlack)
	}
	return nil
}

// nextCap is the capacity append grows a full slice of capacity c to:
// runtime.growslice doubles it up to 256, then adds about a quarter.
func nextCap(c int) int {
	if c < 256 {
		return max(2*c, 1)
	}
	return c + (c+3*256)/4
}

// appendCost is what appending n elements of size bytes one at a time
// allocates.
func appendCost(n int, size int64) int64 {
	var total int64
	for c := 0; c < n; {
		c = nextCap(c)
		total += int64(c) * size
	}
	return total
}

func (w *jsonWalk) peek() byte {
	for w.off < len(w.js) {
		switch c := w.js[w.off]; c {
		case ' ', '\t', '\n', '\r':
			w.off++
		default:
			return c
		}
	}
	return 0
}

func (w *jsonWalk) nest(d int) {
	w.deep = max(w.deep, w.depth+d)
}

// str skips a string. slow reports that encoding/json takes its slow path
// for it (escapes or invalid UTF-8), which allocates a buffer.
func (w *jsonWalk) str() (raw []byte, slow bool, err error) {
	start := w.off
	w.off++ // the quote
	ascii := true
	for w.off < len(w.js) {
		switch c := w.js[w.off]; {
		case c == '"':
			w.off++
			raw = w.js[start:w.off]
			return raw, slow || !ascii && !utf8.Valid(raw), nil
		case c == '\\':
			slow = true
			w.off += 2
		case c >= utf8.RuneSelf:
			ascii = false
			w.off++
		default:
			w.off++
		}
	}
	return nil, false, errJSONSyntax
}

func (w *jsonWalk) num() []byte {
	start := w.off
	for w.off < len(w.js) {
		switch c := w.js[w.off]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			w.off++
		default:
			return w.js[start:w.off]
		}
	}
	return w.js[start:]
}

func (w *jsonWalk) literal() error {
	for _, lit := range []string{"true", "false", "null"} {
		if bytes.HasPrefix(w.js[w.off:], []byte(lit)) {
			w.off += len(lit)
			return nil
		}
	}
	return errJSONSyntax
}

// skip skips a value encoding/json ignores (it allocates nothing for it).
func (w *jsonWalk) skip() error {
	depth := 0
	for {
		switch c := w.peek(); {
		case c == '"':
			if _, _, err := w.str(); err != nil {
				return err
			}
		case c == '{' || c == '[':
			depth++
			w.nest(depth)
			w.off++
			continue
		case c == '}' || c == ']':
			if depth--; depth < 0 {
				return errJSONSyntax
			}
			w.off++
		case (c == ',' || c == ':') && depth > 0:
			w.off++
			continue
		case c == 't' || c == 'f' || c == 'n':
			if err := w.literal(); err != nil {
				return err
			}
		case c == '-' || c >= '0' && c <= '9':
			w.num()
		default:
			return errJSONSyntax
		}
		if depth == 0 {
			return nil
		}
	}
}

// value walks a value decoded into t.
func (w *jsonWalk) value(t *jsonType) error {
	c := w.peek()
	if c == 'n' {
		return w.literal() // null: encoding/json allocates nothing
	}
	switch t.kind {
	case jsonUnmarshaler:
		start := w.off
		if err := w.skip(); err != nil {
			return err
		}
		return w.charge(2*int64(w.off-start) + 512)
	case jsonText, jsonString:
		if c != '"' {
			return w.mismatch(t)
		}
		raw, slow, err := w.str()
		if err != nil {
			return err
		}
		n := int64(len(raw))
		if slow {
			n *= 2 // the unquoting buffer, then the string
		}
		if t.kind == jsonText && bytes.IndexByte(raw, '%') >= 0 {
			n += 256 // netip.Addr interns an IPv6 zone (unique.Make)
		}
		return w.charge(n + 16)
	case jsonBool:
		if c != 't' && c != 'f' {
			return w.mismatch(t)
		}
		return w.literal()
	case jsonInt, jsonUint:
		if c != '-' && (c < '0' || c > '9') {
			return w.mismatch(t)
		}
		start := w.off
		if !intFits(w.num(), t.kind == jsonInt, t.bits) {
			w.off = start
			return w.mismatch(t)
		}
		return nil
	case jsonPointer:
		if err := w.charge(t.elem.size); err != nil {
			return err
		}
		return w.value(t.elem)
	case jsonSlice:
		if c != '[' {
			return w.mismatch(t)
		}
		_, err := w.array(t, false)
		return err
	case jsonStruct:
		if c != '{' {
			return w.mismatch(t)
		}
		return w.object(t, false)
	}
	return errJSONSyntax
}

// array walks the elements of an array decoded into the slice type t and
// returns how many there are. The slice is charged as it grows: element by
// element when made at its length (made), else as append grows it.
func (w *jsonWalk) array(t *jsonType, made bool) (int, error) {
	w.off++
	w.depth++
	w.nest(0)
	defer func() { w.depth-- }()
	if w.peek() == ']' {
		w.off++
		return 0, nil
	}
	for n, c := 1, 0; ; n++ {
		if n > c {
			// Made: one array, an element at a time. Else append moves
			// the slice to a new array of the next capacity.
			size := t.elem.size
			if made {
				c = n
			} else {
				c = nextCap(c)
				size *= int64(c)
			}
			if err := w.charge(size); err != nil {
				return 0, err
			}
		}
		if err := w.value(t.elem); err != nil {
			return 0, err
		}
		switch w.peek() {
		case ',':
			w.off++
		case ']':
			w.off++
			return n, nil
		default:
			return 0, errJSONSyntax
		}
	}
}

// object walks an object decoded into the struct type t. At the top level
// it notes the length of array fields, which decodeJSON makes at that
// length; their elements are charged here once.
func (w *jsonWalk) object(t *jsonType, top bool) error {
	w.off++
	w.depth++
	w.nest(0)
	outer := w.field
	defer func() { w.depth, w.field = w.depth-1, outer }()
	if w.peek() == '}' {
		w.off++
		return nil
	}
	var seen uint64
	for {
		if w.peek() != '"' {
			return errJSONSyntax
		}
		key, slow, err := w.str()
		if err != nil {
			return err
		}
		if w.peek() != ':' {
			return errJSONSyntax
		}
		w.off++
		key = key[1 : len(key)-1]
		i, f := t.field(key)
		switch {
		case slow:
			// encoding/json would unescape it and may match a field; a
			// writer never escapes keys.
			return w.errorf("escaped key %q", key)
		case f == nil:
			err = w.skip()
		case seen&(1<<i) != 0:
			return w.errorf("field %q twice", f.name)
		default:
			seen |= 1 << i
			w.field = f.name
			if top && f.typ.kind == jsonSlice && w.peek() == '[' {
				w.counts[i], err = w.array(f.typ, true)
			} else {
				err = w.value(f.typ)
			}
		}
		if err != nil {
			return err
		}
		switch w.peek() {
		case ',':
			w.off++
		case '}':
			w.off++
			return nil
		default:
			return errJSONSyntax
		}
	}
}

// mismatch refuses a value encoding/json cannot decode into t.
func (w *jsonWalk) mismatch(t *jsonType) error {
	var found string
	switch c := w.peek(); {
	case c == '"':
		found = "a string"
	case c == '{':
		found = "an object"
	case c == '[':
		found = "an array"
	case c == 't' || c == 'f':
		found = "true or false"
	case c == '-' || c >= '0' && c <= '9':
		start := w.off
		n := w.num()
		w.off = start
		if len(n) > 24 {
			n = n[:24]
		}
		found = string(n)
	default:
		return errJSONSyntax
	}
	if w.field == "" {
		return w.errorf("%s where %v belongs", found, t.rt)
	}
	return w.errorf("field %q: %s where %v belongs", w.field, found, t.rt)
}

// intFits reports whether encoding/json decodes the number b into an
// integer of the given signedness and bits without error.
func intFits(b []byte, signed bool, bits int) bool {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		if !signed {
			return false
		}
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return false
		}
		v = v*10 + d
	}
	switch {
	case signed && neg:
		return v <= 1<<(bits-1)
	case signed:
		return v < 1<<(bits-1)
	}
	return bits == 64 || v < 1<<bits
}
