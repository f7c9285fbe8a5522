package tracefile

// What the JSON budget walk (jsonbudget.go) knows of the Go types it sizes.

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
)

// jsonKind is how encoding/json decodes into a Go type.
type jsonKind uint8

const (
	jsonString jsonKind = iota
	jsonBool
	jsonInt
	jsonUint
	jsonStruct
	jsonSlice
	jsonPointer
	jsonText        // encoding.TextUnmarshaler: from a JSON string
	jsonUnmarshaler // json.Unmarshaler: from any JSON value
)

// jsonType is what the walk needs to know of a Go type.
type jsonType struct {
	kind   jsonKind
	rt     reflect.Type
	size   int64       // bytes of one value
	bits   int         // jsonInt, jsonUint
	elem   *jsonType   // jsonSlice, jsonPointer
	fields []jsonField // jsonStruct
	err    error       // the type has something the walk cannot size
}

type jsonField struct {
	name  string // JSON key
	key   []byte // the same
	index int    // Go field index
	typ   *jsonType
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// jsonTypeFor describes t; a type it cannot size gets err set, so every
// decode of it fails (and the tests say so) instead of decoding unbounded.
func jsonTypeFor(t reflect.Type) *jsonType {
	jt, err := newJSONType(t, map[reflect.Type]*jsonType{})
	if err != nil {
		return &jsonType{err: fmt.Errorf("decode %v: %w", t, err)}
	}
	return jt
}

func newJSONType(t reflect.Type, seen map[reflect.Type]*jsonType) (*jsonType, error) {
	if jt, ok := seen[t]; ok {
		return jt, nil
	}
	jt := &jsonType{rt: t, size: int64(t.Size())}
	seen[t] = jt
	var err error
	switch k := t.Kind(); {
	case k != reflect.Pointer && reflect.PointerTo(t).Implements(unmarshalerType):
		jt.kind = jsonUnmarshaler
	case k != reflect.Pointer && reflect.PointerTo(t).Implements(textUnmarshalerType):
		jt.kind = jsonText
	case k == reflect.String:
		jt.kind = jsonString
	case k == reflect.Bool:
		jt.kind = jsonBool
	case k >= reflect.Int && k <= reflect.Int64:
		jt.kind, jt.bits = jsonInt, t.Bits()
	case k >= reflect.Uint && k <= reflect.Uint64:
		jt.kind, jt.bits = jsonUint, t.Bits()
	case k == reflect.Pointer:
		jt.kind = jsonPointer
		jt.elem, err = newJSONType(t.Elem(), seen)
	case k == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		jt.kind = jsonSlice
		jt.elem, err = newJSONType(t.Elem(), seen)
	case k == reflect.Struct:
		jt.kind = jsonStruct
		err = jt.addFields(seen)
	default:
		err = fmt.Errorf("%v: not supported", t)
	}
	return jt, err
}

// addFields lists the fields encoding/json decodes into.
func (jt *jsonType) addFields(seen map[reflect.Type]*jsonType) error {
	t := jt.rt
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		switch {
		case f.Anonymous: // encoding/json promotes its fields, even unexported ones'
			return fmt.Errorf("%v.%s: embedded fields not supported", t, f.Name)
		case !f.IsExported() || tag == "-":
			continue
		}
		name, opts, _ := bytes.Cut([]byte(tag), []byte(","))
		if bytes.Contains(opts, []byte("string")) {
			return fmt.Errorf("%v.%s: ,string not supported", t, f.Name)
		}
		if len(name) == 0 {
			name = []byte(f.Name)
		}
		for _, g := range jt.fields {
			if bytes.EqualFold(g.key, name) {
				return fmt.Errorf("%v: fields %q and %q clash", t, g.name, name)
			}
		}
		ft, err := newJSONType(f.Type, seen)
		if err != nil {
			return err
		}
		jt.fields = append(jt.fields, jsonField{name: string(name), key: name, index: i, typ: ft})
	}
	if len(jt.fields) > 64 {
		return fmt.Errorf("%v: more than 64 fields", t)
	}
	return nil
}

// field finds the field for a key as encoding/json does (case-insensitively).
func (jt *jsonType) field(key []byte) (int, *jsonField) {
	for i := range jt.fields {
		if f := &jt.fields[i]; bytes.EqualFold(key, f.key) {
			return i, f
		}
	}
	return -1, nil
}
