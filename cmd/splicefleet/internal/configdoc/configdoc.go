package configdoc

import (
	"fmt"
	"go/ast"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Key is one configuration key, as a user writes it.
type Key struct {
	// Name is the YAML key.
	Name string
	// Field is the Go field the key sets.
	Field string
	// Type is the user-facing type: string, integer, duration, list of
	// strings, ...
	Type string
	// Default is the default for people to read: a YAML value, a
	// placeholder for a default that depends on the machine, or "" when
	// the default is empty.
	Default string
	// Value is the default as the example file writes it (a YAML value, or
	// the placeholder).
	Value string
	// Placeholder is set when Default and Value stand for a value that
	// depends on the machine rather than being it.
	Placeholder bool
	// Required holds why the key must be set, when its default does not
	// pass validation; empty otherwise.
	Required string
	// Doc is the field's doc comment, with Go field names replaced by
	// their keys (marked with backquotes).
	Doc *comment.Doc
}

// Options tunes Describe.
type Options struct {
	// Placeholders shows the default of these keys as the given text
	// instead of its value (which depends on the machine).
	Placeholders map[string]string
	// Problems are the validation errors of the defaults, each starting
	// with the key it is about ("keyring is required"); such keys are
	// marked required, but for placeholders, whose defaults depend on the
	// machine. A problem that names no key is an error.
	Problems []string
}

// Describe lists the keys of the struct type typeName declared in src,
// with the defaults read from defaults (a value of that type).
func Describe(src []byte, typeName string, defaults any, opts Options) ([]Key, error) {
	fields, err := parseFields(src, typeName)
	if err != nil {
		return nil, err
	}
	v := reflect.ValueOf(defaults)
	if v.Kind() != reflect.Struct || v.Type().Name() != typeName {
		return nil, fmt.Errorf("defaults are a %s, want a %s", v.Type(), typeName)
	}
	byKey := map[string]int{}
	for i := 0; i < v.NumField(); i++ {
		if k, ok := yamlKey(v.Type().Field(i)); ok {
			byKey[k] = i
		}
	}
	names := map[string]string{} // Go field name -> key
	for _, f := range fields {
		names[f.field] = f.key
	}
	var keys []Key
	for _, f := range fields {
		i, ok := byKey[f.key]
		if !ok {
			return nil, fmt.Errorf("key %s is in the source but not in the compiled %s: is the source stale?", f.key, typeName)
		}
		delete(byKey, f.key)
		sf := v.Type().Field(i)
		typ, err := userType(sf.Type)
		if err != nil {
			return nil, fmt.Errorf("key %s (%s): %w", f.key, sf.Name, err)
		}
		value, err := yamlValue(v.Field(i))
		if err != nil {
			return nil, fmt.Errorf("key %s (%s): %w", f.key, sf.Name, err)
		}
		k := Key{Name: f.key, Field: f.field, Type: typ, Value: value, Default: value,
			Doc: parseDoc(f.doc, names)}
		if isEmpty(v.Field(i)) {
			k.Default = ""
		}
		if p, ok := opts.Placeholders[f.key]; ok {
			k.Default, k.Value, k.Placeholder = p, p, true
		}
		keys = append(keys, k)
	}
	if len(byKey) > 0 {
		var missing []string
		for k := range byKey {
			missing = append(missing, k)
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("keys %s are in the compiled %s but not in the source: is the source stale?", strings.Join(missing, ", "), typeName)
	}
	for p := range opts.Placeholders {
		if !hasKey(keys, p) {
			return nil, fmt.Errorf("placeholder for %s, which is not a key", p)
		}
	}
	for _, p := range opts.Problems {
		i := problemKey(keys, p)
		if i < 0 {
			return nil, fmt.Errorf("the defaults fail validation with %q, which names no key", p)
		}
		if keys[i].Placeholder {
			continue // the default depends on the machine, and so does its validity
		}
		keys[i].Required = p
	}
	return keys, nil
}

type field struct {
	field, key, doc string
}

// parseFields reads the fields of typeName from src: name, key and doc
// comment, in source order. Every field needs a doc comment.
func parseFields(src []byte, typeName string) ([]field, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var st *ast.StructType
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == typeName {
			st, _ = ts.Type.(*ast.StructType)
			return false
		}
		return st == nil
	})
	if st == nil {
		return nil, fmt.Errorf("no struct type %s in the source", typeName)
	}
	var out []field
	for _, fl := range st.Fields.List {
		if len(fl.Names) == 0 {
			return nil, fmt.Errorf("%s: embedded fields are not supported", fset.Position(fl.Pos()))
		}
		tag := ""
		if fl.Tag != nil {
			t, err := strconv.Unquote(fl.Tag.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: tag: %w", fset.Position(fl.Pos()), err)
			}
			tag = t
		}
		for _, name := range fl.Names {
			sf := reflect.StructField{Name: name.Name, Tag: reflect.StructTag(tag)}
			if !name.IsExported() {
				continue
			}
			key, ok := yamlKey(sf)
			if !ok {
				continue
			}
			doc := strings.TrimSpace(fl.Doc.Text())
			if doc == "" {
				return nil, fmt.Errorf("%s: field %s (key %s) has no doc comment; say what it does and its default", fset.Position(name.Pos()), name.Name, key)
			}
			out = append(out, field{field: name.Name, key: key, doc: doc})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("struct %s has no keys", typeName)
	}
	return out, nil
}

// yamlKey is the key the YAML decoder uses for a field, as go.yaml.in/yaml
// derives it: the tag's name, or the lowercased field name; "-" and
// unexported fields have none.
func yamlKey(sf reflect.StructField) (string, bool) {
	if !token.IsExported(sf.Name) {
		return "", false
	}
	name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return "", false
	case "":
		return strings.ToLower(sf.Name), true
	}
	return name, true
}

var durationType = reflect.TypeFor[time.Duration]()

// userType names a Go type as a user of the YAML file sees it.
func userType(t reflect.Type) (string, error) {
	if t == durationType {
		return "duration", nil
	}
	switch t.Kind() {
	case reflect.String:
		return "string", nil
	case reflect.Bool:
		return "boolean", nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer", nil
	case reflect.Float32, reflect.Float64:
		return "number", nil
	case reflect.Slice:
		e, err := userType(t.Elem())
		if err != nil {
			return "", err
		}
		if strings.Contains(e, " ") {
			return "", fmt.Errorf("type %s: lists of %s are not supported", t, e)
		}
		return "list of " + plural(e), nil
	case reflect.Map:
		k, err := userType(t.Key())
		if err != nil {
			return "", err
		}
		e, err := userType(t.Elem())
		if err != nil {
			return "", err
		}
		if strings.Contains(k+e, " ") {
			return "", fmt.Errorf("type %s: nested maps and lists are not supported", t)
		}
		return "map of " + k + " to " + e, nil
	}
	return "", fmt.Errorf("type %s has no user-facing name; teach configdoc to render it", t)
}

func plural(s string) string {
	if strings.HasSuffix(s, "y") {
		return s[:len(s)-1] + "ies"
	}
	return s + "s"
}

// yamlValue writes v as a YAML value in flow style, one line.
func yamlValue(v reflect.Value) (string, error) {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String(), nil
	}
	switch v.Kind() {
	case reflect.String:
		return yamlString(v.String()), nil
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, v.Type().Bits()), nil
	case reflect.Slice:
		var items []string
		for i := 0; i < v.Len(); i++ {
			s, err := yamlValue(v.Index(i))
			if err != nil {
				return "", err
			}
			items = append(items, s)
		}
		return "[" + strings.Join(items, ", ") + "]", nil
	case reflect.Map:
		var items []string
		for it := v.MapRange(); it.Next(); {
			k, err := yamlValue(it.Key())
			if err != nil {
				return "", err
			}
			e, err := yamlValue(it.Value())
			if err != nil {
				return "", err
			}
			items = append(items, k+": "+e)
		}
		sort.Strings(items)
		return "{" + strings.Join(items, ", ") + "}", nil
	}
	return "", fmt.Errorf("cannot write a %s as YAML", v.Type())
}

var (
	plainWord = regexp.MustCompile(`^[A-Za-z/][A-Za-z0-9/_.:@-]*$`)
	plainAddr = regexp.MustCompile(`^[0-9]+(\.[0-9]+){3}:[0-9]+$`)
	// YAML 1.1 and 1.2 words that do not read as strings.
	specialWords = map[string]bool{"true": true, "false": true, "yes": true, "no": true, "y": true, "n": true,
		"on": true, "off": true, "null": true}
)

// yamlString writes s plain when that reads back as the same string, and
// double-quoted otherwise (Go's escapes are a subset of YAML's).
func yamlString(s string) string {
	plain := (plainWord.MatchString(s) || plainAddr.MatchString(s)) &&
		!specialWords[strings.ToLower(s)] && !strings.HasSuffix(s, ":") && !strings.Contains(s, "::")
	if plain {
		return s
	}
	return strconv.Quote(s)
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	case reflect.String:
		return v.String() == ""
	}
	return false
}

// parseDoc parses a field's doc comment, naming fields by their keys.
func parseDoc(text string, names map[string]string) *comment.Doc {
	var fieldNames []string
	for n := range names {
		fieldNames = append(fieldNames, regexp.QuoteMeta(n))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(fieldNames))) // longest match first among shared prefixes
	re := regexp.MustCompile(`\b(` + strings.Join(fieldNames, "|") + `)\b`)
	text = re.ReplaceAllStringFunc(text, func(n string) string { return "`" + names[n] + "`" })
	var p comment.Parser
	return p.Parse(text)
}

// problemKey finds the key a validation problem is about: the problem
// starts with it.
func problemKey(keys []Key, problem string) int {
	best := -1
	for i, k := range keys {
		if strings.HasPrefix(problem, k.Name+" ") || strings.HasPrefix(problem, k.Name+":") {
			if best < 0 || len(k.Name) > len(keys[best].Name) {
				best = i
			}
		}
	}
	return best
}

func hasKey(keys []Key, name string) bool {
	for _, k := range keys {
		if k.Name == name {
			return true
		}
	}
	return false
}
