// Package jsonkeys refuses JSON that two readers would read differently
// because of its object keys.
//
// encoding/json matches an object's keys to struct fields ignoring case
// (Unicode simple folding, so "ſha256" is "sha256" and "ID" is "id") and,
// when a key comes twice, keeps the last; jq, Python and most reviewers'
// tools match keys exactly, and keep the last or the first. So
// {"id":"cmdline","ID":"evil-id"} shows "cmdline" to a reviewer and decodes
// to "evil-id" in Go. Every signed document is therefore passed through a
// [Checker] before it is decoded: a token-level pass with
// encoding/json's Decoder.Token, recursive over objects and arrays and
// bounded in depth, that refuses
//
//   - an object holding a key twice,
//   - an object holding two keys that differ only in case, and
//   - a key that names a field of the target type only when case is
//     ignored.
//
// The refusal is a [*KeyError] that names the key and where it is; it
// matches [ErrDuplicateKey] with errors.Is. The checker also refuses
// anything that is not exactly one JSON value, so what passes it is valid
// JSON in which every key reads the same to every reader.
package jsonkeys

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode"
)

// MaxDepth bounds how deeply objects and arrays may nest. Signed documents
// nest a few levels; the bound keeps a crafted input from costing more
// than its size.
const MaxDepth = 32

var (
	// ErrDuplicateKey reports a key that more than one reader would not
	// read the same way: given twice, given twice in different case, or
	// naming a field only when case is ignored.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrMalformed reports input that is not exactly one JSON value, or
	// nests deeper than MaxDepth.
	ErrMalformed = errors.New("malformed JSON")
)

// KeyError names the key that was refused.
type KeyError struct {
	Path  string // where the object is, as $.target or $.functions[2]
	Key   string // the key refused
	Other string // the key or field name it collides with
	Field bool   // Other is a field name of the target type, not a key
}

func (e *KeyError) Error() string {
	switch {
	case e.Field:
		return fmt.Sprintf("key %q in the object at %s is the field %q only when case is ignored; spell it %q", e.Key, e.Path, e.Other, e.Other)
	case e.Key == e.Other:
		return fmt.Sprintf("duplicate key %q in the object at %s", e.Key, e.Path)
	}
	return fmt.Sprintf("duplicate key %q in the object at %s: it differs from %q only in case, and readers disagree on which counts", e.Key, e.Path, e.Other)
}

// Is makes errors.Is(err, ErrDuplicateKey) true.
func (e *KeyError) Is(target error) bool { return target == ErrDuplicateKey }

// Checker checks JSON meant for one Go type. Its zero value checks
// duplicates only; [For] also knows the type's field names. A Checker is
// safe for concurrent use.
type Checker struct {
	exact  map[string]bool   // field names as the tags spell them
	folded map[string]string // folded field name -> a field name
}

// For makes a checker for JSON that decodes into values of v's type
// (a struct, or a pointer to one): it also refuses keys that reach one of
// the type's fields, at any depth, only by case folding.
func For(v any) *Checker {
	c := &Checker{exact: map[string]bool{}, folded: map[string]string{}}
	collect(reflect.TypeOf(v), c, map[reflect.Type]bool{})
	return c
}

// Check reads data token by token and returns a *KeyError for the first
// ambiguous key, an error wrapping ErrMalformed for input that is not one
// JSON value, and nil otherwise.
func (c *Checker) Check(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := c.value(dec, "$", 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the top-level value", ErrMalformed)
	}
	return nil
}

// Check checks data for duplicate keys with no knowledge of field names.
func Check(data []byte) error { return (&Checker{}).Check(data) }

func (c *Checker) value(dec *json.Decoder, path string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a string, number, bool or null
	}
	if depth >= MaxDepth {
		return fmt.Errorf("%w: nested more than %d levels at %s", ErrMalformed, MaxDepth, path)
	}
	switch d {
	case '[':
		for i := 0; dec.More(); i++ {
			if err := c.value(dec, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	case '{':
		seen := map[string]string{} // folded key -> key as given
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			key, ok := tok.(string)
			if !ok {
				return fmt.Errorf("%w: object key %v at %s", ErrMalformed, tok, path)
			}
			f := Fold(key)
			if first, dup := seen[f]; dup {
				return &KeyError{Path: path, Key: key, Other: first}
			}
			seen[f] = key
			if name, ok := c.folded[f]; ok && !c.exact[key] {
				return &KeyError{Path: path, Key: key, Other: name, Field: true}
			}
			if err := c.value(dec, path+"."+key, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: unexpected %v at %s", ErrMalformed, d, path)
	}
	// The closing delimiter; Decoder.Token has checked that it matches.
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// Fold maps s to a form in which two strings are equal exactly when
// strings.EqualFold (and so encoding/json's field matching) calls them
// equal: every rune becomes the smallest rune of its simple case-folding
// orbit.
func Fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		b.WriteRune(low)
	}
	return b.String()
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// collect adds the JSON names of t's fields, and of the types they hold,
// as encoding/json names them.
func collect(t reflect.Type, into *Checker, seen map[reflect.Type]bool) {
	if t == nil || seen[t] {
		return
	}
	seen[t] = true
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) ||
		t.Implements(textUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return // decodes itself (time.Time): not from an object of fields
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		collect(t.Elem(), into, seen)
	case reflect.Struct:
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if sf.Anonymous && name == "" {
				collect(sf.Type, into, seen) // embedded: its fields are promoted
				continue
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			into.exact[name] = true
			into.folded[Fold(name)] = name
			collect(sf.Type, into, seen)
		}
	}
}
