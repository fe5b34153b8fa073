package jsonkeys

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Name string `json:"name"`
}

type doc struct {
	ID      string            `json:"id"`
	Version uint64            `json:"version"`
	Module  inner             `json:"module"`
	List    []inner           `json:"list,omitempty"`
	When    time.Time         `json:"when"`
	Tags    map[string]string `json:"tags,omitempty"`
	Skipped string            `json:"-"`
}

func TestCheckAccepts(t *testing.T) {
	c := For(doc{})
	for _, in := range []string{
		`{"id":"cmdline","version":1,"module":{"name":"a"},"list":[{"name":"x"},{"name":"y"}],"when":"2026-01-01T00:00:00Z"}`,
		`{"id":"a","tags":{"a":"1","b":"2"}}`,
		` [1, "two", null, true, {"id":"x"}, []] `,
		`"just a string"`,
	} {
		if err := c.Check([]byte(in)); err != nil {
			t.Errorf("Check(%s) = %v", in, err)
		}
	}
}

// TestCheckRefuses is one case per ambiguity: each asserts the key the
// error names and that errors.Is sees ErrDuplicateKey.
func TestCheckRefuses(t *testing.T) {
	c := For(doc{})
	cases := []struct {
		name, in, want string
	}{
		{"exact duplicate", `{"id":"cmdline","id":"evil-id"}`, `duplicate key "id" in the object at $`},
		{"case variant", `{"id":"cmdline","ID":"evil-id"}`, `duplicate key "ID" in the object at $: it differs from "id" only in case`},
		{"capitalised field before it", `{"Version":4000000000,"version":1}`, `key "Version" in the object at $ is the field "version" only when case is ignored`},
		{"escaped key", `{"id":"a","\u0049D":"b"}`, `duplicate key "ID"`},
		{"Kelvin sign folds to k", `{"k":1,"\u212a":2}`, "duplicate key \"\u212a\" in the object at $: it differs from \"k\" only in case"},
		{"nested", `{"module":{"name":"a","NAME":"b"}}`, `duplicate key "NAME" in the object at $.module`},
		{"inside an array", `{"list":[{"name":"a"},{"name":"b","name":"c"}]}`, `duplicate key "name" in the object at $.list[1]`},
		{"field only by case", `{"ID":"evil-id"}`, `key "ID" in the object at $ is the field "id" only when case is ignored`},
		{"field by long s", `{"module":{"name":"a"},"\u017fkipped":1,"ver\u017fion":2}`, `key "verſion" in the object at $ is the field "version" only when case is ignored`},
		{"map keys differing in case", `{"tags":{"ring":"a","Ring":"b"}}`, `duplicate key "Ring" in the object at $.tags`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Check([]byte(tc.in))
			if !errors.Is(err, ErrDuplicateKey) {
				t.Fatalf("Check(%s) = %v, want a duplicate key", tc.in, err)
			}
			var ke *KeyError
			if !errors.As(err, &ke) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	// encoding/json itself takes the last of a case variant: the reason
	// for the check.
	var d doc
	if err := json.Unmarshal([]byte(`{"id":"cmdline","ID":"evil-id"}`), &d); err != nil || d.ID != "evil-id" {
		t.Fatalf("encoding/json read id %q (%v); the premise of this package changed", d.ID, err)
	}
}

func TestCheckRefusesMalformedAndDeep(t *testing.T) {
	for _, in := range []string{``, `{`, `{"a":1`, `{"a" 1}`, `[1,]`, `{"a":1}{"b":2}`, `{"a":1} x`, `{1:2}`,
		strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)} {
		if err := Check([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Check(%.40q) = %v, want malformed", in, err)
		}
	}
	ok := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if err := Check([]byte(ok)); err != nil {
		t.Errorf("%d levels: %v", MaxDepth, err)
	}
}

func TestFoldMatchesEqualFold(t *testing.T) {
	pairs := [][2]string{{"id", "ID"}, {"k", "\u212a"}, {"s", "\u017f"}, {"sha256", "SHA256"}, {"ß", "ẞ"}, {"a", "b"}, {"Σ", "ς"}, {"i", "İ"}}
	for _, p := range pairs {
		if got, want := Fold(p[0]) == Fold(p[1]), strings.EqualFold(p[0], p[1]); got != want {
			t.Errorf("Fold(%q) == Fold(%q) is %v, EqualFold says %v", p[0], p[1], got, want)
		}
	}
}

// FuzzCheck: the check never panics; what it accepts is valid JSON in
// which no object holds two keys that strings.EqualFold calls equal.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"id":"a","ID":"b"}`, `{"a":{"b":[{"c":1,"C":2}]}}`, `[]`, `{"\u212a":1,"k":2}`, `{"a":1,"a":2}`, `"x"`, `{"a":[{"b":{}}]}`} {
		f.Add([]byte(s))
	}
	c := For(doc{})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := c.Check(data)
		if err != nil {
			if !errors.Is(err, ErrDuplicateKey) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is neither a duplicate key nor malformed", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", data, err)
		}
		var walk func(v any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				keys := make([]string, 0, len(x))
				for k, e := range x {
					for _, o := range keys {
						if strings.EqualFold(k, o) {
							t.Fatalf("accepted %q with keys %q and %q", data, k, o)
						}
					}
					keys = append(keys, k)
					walk(e)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		walk(v)
		// A duplicate key collapses in a map: count the keys as written.
		if n, m := countKeys(t, data), len(keysOf(v)); n != m {
			t.Fatalf("accepted %q: %d keys written, %d distinct", data, n, m)
		}
	})
}

// countKeys counts every object key in data, token by token.
func countKeys(t *testing.T, data []byte) int {
	type frame struct{ object, wantKey bool }
	dec := json.NewDecoder(strings.NewReader(string(data)))
	var stack []frame
	// valueRead marks that the enclosing object's value was read.
	valueRead := func() {
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].wantKey = true
		}
	}
	n := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return n
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueRead()
			continue
		}
		if len(stack) > 0 && stack[len(stack)-1].wantKey {
			n++
			stack[len(stack)-1].wantKey = false
			continue
		}
		valueRead()
	}
}

func keysOf(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			out = append(out, k)
			out = append(out, keysOf(e)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, keysOf(e)...)
		}
	}
	return out
}
