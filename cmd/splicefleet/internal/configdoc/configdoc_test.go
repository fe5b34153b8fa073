package configdoc

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go/doc/comment"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/splicefleet/splicefleet/agent"
)

var update = flag.Bool("update", false, "rewrite docs/config.md, dist/agent.yaml and the man page cmd/splicefleet/splicefleet-agent.yaml.5")

// Paths from this package's folder, where go test runs.
var (
	sourcePath    = filepath.Join("..", "..", "..", "..", "agent", "config.go")
	referencePath = filepath.Join("..", "..", "..", "..", "docs", "config.md")
	examplePath   = filepath.Join("..", "..", "..", "..", "dist", "agent.yaml")
	// The man page is embedded in the binary, whose gendocs installs it.
	manPath = filepath.Join("..", "..", "..", "..", "cmd", "splicefleet", ManName+".5")
)

func agentKeys(t *testing.T) []Key {
	t.Helper()
	src, err := os.ReadFile(sourcePath)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := Agent(src)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestGeneratedFilesAreCurrent regenerates the reference and the example
// file and compares them with the committed ones.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	keys := agentKeys(t)
	md, err := Markdown(keys)
	if err != nil {
		t.Fatal(err)
	}
	example, err := Example(keys)
	if err != nil {
		t.Fatal(err)
	}
	for path, got := range map[string][]byte{referencePath: md, examplePath: example, manPath: Man(keys)} {
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run go test ./cmd/splicefleet/internal/configdoc -update)", err)
			continue
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s is out of date with agent/config.go; run go test ./cmd/splicefleet/internal/configdoc -update and review the diff (-committed +generated):\n%s", path, diff)
		}
	}
}

// TestExampleIsTheDefaults loads the committed example file as the agent
// does: commented out, it must set nothing.
func TestExampleIsTheDefaults(t *testing.T) {
	f, err := os.Open(examplePath)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/splicefleet/internal/configdoc -update)", err)
	}
	defer f.Close()
	got, err := agent.DecodeConfig(f)
	if err != nil {
		t.Fatalf("the example file does not load: %v", err)
	}
	if diff := cmp.Diff(agent.DefaultConfig(), got); diff != "" {
		t.Errorf("the example file changes the defaults (-want +got):\n%s", diff)
	}
}

// TestExampleValuesAreTheDefaults uncomments every key of the example
// (but those whose default is a placeholder) and loads it: each value
// written must read back as the default.
func TestExampleValuesAreTheDefaults(t *testing.T) {
	keys := agentKeys(t)
	example, err := Example(keys)
	if err != nil {
		t.Fatal(err)
	}
	skip := map[string]bool{}
	for _, k := range keys {
		skip[k.Name] = k.Placeholder
	}
	line := regexp.MustCompile(`^#([a-z0-9_]+): `)
	var b strings.Builder
	n := 0
	for _, l := range strings.SplitAfter(string(example), "\n") {
		if m := line.FindStringSubmatch(l); m != nil && !skip[m[1]] {
			l = l[1:]
			n++
		}
		b.WriteString(l)
	}
	if want := len(keys) - 1; n != want {
		t.Fatalf("uncommented %d keys, want %d:\n%s", n, want, b.String())
	}
	got, err := agent.DecodeConfig(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("uncommented example: %v\n%s", err, b.String())
	}
	// An empty list or map written out ([] or {}) is as good as none.
	if diff := cmp.Diff(agent.DefaultConfig(), got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("uncommented example differs from the defaults (-want +got):\n%s", diff)
	}
}

// TestEveryFieldIsDocumented walks agent.Config by reflection: a field
// the decoder reads must be in the reference and the example, with a
// description.
func TestEveryFieldIsDocumented(t *testing.T) {
	keys := agentKeys(t)
	md, err := Markdown(keys)
	if err != nil {
		t.Fatal(err)
	}
	example, err := Example(keys)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Key{}
	for _, k := range keys {
		byName[k.Name] = k
	}
	typ := reflect.TypeFor[agent.Config]()
	n := 0
	for i := 0; i < typ.NumField(); i++ {
		name, ok := yamlKey(typ.Field(i))
		if !ok {
			continue
		}
		n++
		k, ok := byName[name]
		if !ok {
			t.Errorf("field %s (key %s) is not in the reference", typ.Field(i).Name, name)
			continue
		}
		if k.Field != typ.Field(i).Name {
			t.Errorf("key %s documents field %s, want %s", name, k.Field, typ.Field(i).Name)
		}
		if len(strings.Fields(renderDoc(k))) < 3 {
			t.Errorf("key %s: description %q says too little", name, renderDoc(k))
		}
		if !bytes.Contains(md, []byte("\n### `"+name+"`\n")) {
			t.Errorf("key %s has no section in the reference", name)
		}
		if !regexp.MustCompile(`(?m)^#` + name + `: `).Match(example) {
			t.Errorf("key %s is not in the example file", name)
		}
	}
	if n < 10 || n != len(keys) {
		t.Errorf("agent.Config has %d keys, the reference %d", n, len(keys))
	}
}

func renderDoc(k Key) string { return funcs["markdown"].(func(*comment.Doc) string)(k.Doc) }

// TestDocCommentDefaultsAgree checks the defaults that doc comments state,
// "(default 30s)", against DefaultConfig.
func TestDocCommentDefaultsAgree(t *testing.T) {
	stated := regexp.MustCompile(`\(default:? ([^)]*)\)`)
	checked := 0
	for _, k := range agentKeys(t) {
		m := stated.FindStringSubmatch(strings.Join(strings.Fields(renderDoc(k)), " "))
		if m == nil {
			continue
		}
		checked++
		want := k.Default
		if k.Placeholder {
			want = strings.Trim(want, "()")
		}
		if m[1] != want {
			t.Errorf("key %s: the doc comment says the default is %q, DefaultConfig says %q", k.Name, m[1], want)
		}
	}
	if checked < 5 {
		t.Errorf("only %d doc comments state a default; is the pattern broken?", checked)
	}
}

// TestRequiredKeys: the defaults validate (the gossip keys and the
// keyring have default paths), so the reference marks no key required.
func TestRequiredKeys(t *testing.T) {
	var got []string
	for _, k := range agentKeys(t) {
		if k.Required != "" {
			got = append(got, k.Name)
		}
	}
	if diff := cmp.Diff([]string(nil), got); diff != "" {
		t.Errorf("required keys (-want +got):\n%s", diff)
	}
}

// sample stands for a configuration type that grew new fields.
type sample struct {
	Name     string            `yaml:"name"`
	Protocol int               `yaml:"protocol"`
	Port     uint16            `yaml:"port,omitempty"`
	Ratio    float64           `yaml:"ratio"`
	Wait     time.Duration     `yaml:"wait"`
	Verbose  bool              `yaml:"verbose"`
	Peers    []string          `yaml:"peers"`
	Limits   map[string]int    `yaml:"limits"`
	Labels   map[string]string `yaml:"labels"`
	Mode     mode              `yaml:"mode"`
	Untagged string
	Ignored  string `yaml:"-"`
	hidden   string
}

type mode string

const sampleSource = `package x

type sample struct {
	// Name names it (default: the host).
	Name string ` + "`yaml:\"name\"`" + `
	// Protocol is the wire protocol version; Name is unrelated.
	Protocol int ` + "`yaml:\"protocol\"`" + `
	// Port is a port.
	Port uint16 ` + "`yaml:\"port,omitempty\"`" + `
	// Ratio is a share.
	Ratio float64 ` + "`yaml:\"ratio\"`" + `
	// Wait is how long.
	//
	// A second paragraph.
	Wait time.Duration ` + "`yaml:\"wait\"`" + `
	// Verbose says more.
	Verbose bool ` + "`yaml:\"verbose\"`" + `
	// Peers lists peers.
	Peers []string ` + "`yaml:\"peers\"`" + `
	// Limits bounds things.
	Limits map[string]int ` + "`yaml:\"limits\"`" + `
	// Labels label things.
	Labels map[string]string ` + "`yaml:\"labels\"`" + `
	// Mode is a named string type.
	Mode mode ` + "`yaml:\"mode\"`" + `
	// Untagged has no tag.
	Untagged string
	Ignored string ` + "`yaml:\"-\"`" + `
	hidden string
}
`

// TestNewFieldsNeedNoChanges describes a type with fields the agent does
// not have yet, a protocol version among them.
func TestNewFieldsNeedNoChanges(t *testing.T) {
	def := sample{Name: "h", Protocol: 3, Port: 7946, Ratio: 0.5, Wait: 90 * time.Second, Verbose: true,
		Peers: []string{"a:1", "yes"}, Limits: map[string]int{"b": 2, "a": 1}, Mode: "fast", hidden: "x"}
	keys, err := Describe([]byte(sampleSource), "sample", def, Options{
		Placeholders: map[string]string{"name": "(the host)"},
		Problems:     []string{`ratio 0.5 must be 1`, `name "h": this machine's name is not valid`},
	})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Name, Field, Type, Default, Value, Required string }
	var got []row
	for _, k := range keys {
		got = append(got, row{k.Name, k.Field, k.Type, k.Default, k.Value, k.Required})
	}
	want := []row{
		{"name", "Name", "string", "(the host)", "(the host)", ""},
		{"protocol", "Protocol", "integer", "3", "3", ""},
		{"port", "Port", "integer", "7946", "7946", ""},
		{"ratio", "Ratio", "number", "0.5", "0.5", "ratio 0.5 must be 1"},
		{"wait", "Wait", "duration", "1m30s", "1m30s", ""},
		{"verbose", "Verbose", "boolean", "true", "true", ""},
		{"peers", "Peers", "list of strings", `[a:1, "yes"]`, `[a:1, "yes"]`, ""},
		{"limits", "Limits", "map of string to integer", "{a: 1, b: 2}", "{a: 1, b: 2}", ""},
		{"labels", "Labels", "map of string to string", "", "{}", ""},
		{"mode", "Mode", "string", "fast", "fast", ""},
		{"untagged", "Untagged", "string", "", `""`, ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("keys (-want +got):\n%s", diff)
	}
	if d := renderDoc(keys[1]); d != "`protocol` is the wire protocol version; `name` is unrelated." {
		t.Errorf("doc %q", d)
	}
	md, err := Markdown(keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"| [`protocol`](#protocol) | integer | `3` |",
		"| [`ratio`](#ratio) | number | **required** |",
		"| [`labels`](#labels) | map of string to string | none |",
		"| [`name`](#name) | string | (the host) |",
		"Type: duration. Default: `1m30s`.\n\n`wait` is how long.\n\nA second paragraph.\n",
	} {
		if !bytes.Contains(md, []byte(s)) {
			t.Errorf("reference lacks %q:\n%s", s, md)
		}
	}
	example, err := Example(keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"\n# protocol is the wire protocol version; name is unrelated.\n#protocol: 3\n",
		"\n# wait is how long.\n#\n# A second paragraph.\n#wait: 1m30s\n",
		"\n# name names it (default: the host).\n#name: (the host)\n",
		"\n# ratio is a share.\n# Required: the agent does not start without it.\n#ratio: 0.5\n",
		"#labels: {}\n",
	} {
		if !bytes.Contains(bytes.ReplaceAll(example, []byte("`"), nil), []byte(s)) {
			t.Errorf("example lacks %q:\n%s", s, example)
		}
	}
}

// TestDescribeRefuses: gaps are errors, not silent omissions.
func TestDescribeRefuses(t *testing.T) {
	type Small struct {
		A string `yaml:"a"`
	}
	type Cfg struct {
		A string            `yaml:"a"`
		B *int              `yaml:"b"`
		C struct{ X int }   `yaml:"c"`
		D []map[string]bool `yaml:"d"`
	}
	type Nested struct {
		C struct{ X int } `yaml:"c"`
	}
	type Lists struct {
		D []map[string]bool `yaml:"d"`
	}
	src := func(typ, fields string) string {
		return "package x\ntype " + typ + " struct {\n" + fields + "}\n"
	}
	documented := "// A is a.\nA string `yaml:\"a\"`\n"
	cases := []struct {
		name, src, typ string
		defaults       any
		opts           Options
		want           string
	}{
		{"defaults of another type", src("Small", documented), "Small", Cfg{}, Options{},
			"defaults are a configdoc.Cfg, want a Small"},
		{"no such type", src("Other", documented), "Small", Small{}, Options{},
			"no struct type Small in the source"},
		{"undocumented field", src("Small", "A string `yaml:\"a\"`\n"), "Small", Small{}, Options{},
			"field A (key a) has no doc comment"},
		{"stale source", src("Small", documented+"// Z is z.\nZ string `yaml:\"z\"`\n"), "Small", Small{}, Options{},
			"key z is in the source but not in the compiled Small"},
		{"field missing from the source", src("Cfg", documented), "Cfg", Cfg{}, Options{},
			"keys b, c, d are in the compiled Cfg but not in the source"},
		{"pointer", src("Cfg", documented+"// B.\nB *int `yaml:\"b\"`\n// C.\nC struct{ X int } `yaml:\"c\"`\n// D.\nD []map[string]bool `yaml:\"d\"`\n"),
			"Cfg", Cfg{}, Options{}, "key b (B): type *int has no user-facing name"},
		{"struct", src("Nested", "// C is c.\nC struct{ X int } `yaml:\"c\"`\n"), "Nested", Nested{}, Options{},
			"key c (C): type struct { X int } has no user-facing name"},
		{"list of maps", src("Lists", "// D is d.\nD []map[string]bool `yaml:\"d\"`\n"), "Lists", Lists{}, Options{},
			"lists of map of string to boolean are not supported"},
		{"problem without a key", src("Small", documented), "Small", Small{},
			Options{Problems: []string{"address x: want host:port"}}, "names no key"},
		{"placeholder without a key", src("Small", documented), "Small", Small{},
			Options{Placeholders: map[string]string{"b": "(x)"}}, "placeholder for b, which is not a key"},
	}
	for _, c := range cases {
		_, err := Describe([]byte(c.src), c.typ, c.defaults, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// TestYAMLStringReadsBack decodes every string as the agent's YAML
// decoder would.
func TestYAMLStringReadsBack(t *testing.T) {
	for _, s := range []string{"", "linux", "sim:/tmp/k", "0.0.0.0:7946", "[::]:7946", "/var/lib/splicefleet",
		"yes", "No", "on", "null", "~", "1", "1.5", "0x10", "1e3", ".inf", "-x", "x:", "a: b", "#x", "a #b",
		"a b", "\n", "tab\there", `q"uote`, "back\\slash", "[x]", "{x}", "*x", "&x", "!x", "%x", "@x", "`x",
		"2001-12-14", "12:30", "é", "a,b"} {
		var v struct{ V string }
		text := "v: " + yamlString(s) + "\n"
		if err := yaml.Unmarshal([]byte(text), &v); err != nil || v.V != s {
			t.Errorf("%q written as %q reads back as %q, %v", s, text, v.V, err)
		}
	}
}
