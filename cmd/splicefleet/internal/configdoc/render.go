package configdoc

import (
	"bytes"
	"go/doc/comment"
	"strings"
	"text/template"
)

// Example renders the commented default configuration file: every key
// commented out and set to its default, with its description above it.
// Loaded as it is, it sets nothing.
func Example(keys []Key) ([]byte, error) {
	return execute(exampleTemplate, keys)
}

// Markdown renders the reference page, with the example file at its end.
func Markdown(keys []Key) ([]byte, error) {
	example, err := Example(keys)
	if err != nil {
		return nil, err
	}
	return execute(markdownTemplate, struct {
		Keys    []Key
		Example string
	}{keys, string(example)})
}

func execute(t *template.Template, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var funcs = template.FuncMap{
	// yamlComment is a description as comment lines of the example file.
	"yamlComment": func(d *comment.Doc) string {
		p := comment.Printer{TextPrefix: "# ", TextCodePrefix: "#     ", TextWidth: 70}
		return strings.ReplaceAll(string(p.Text(d)), "# \n", "#\n")
	},
	// markdown is a description as Markdown paragraphs.
	"markdown": func(d *comment.Doc) string {
		p := comment.Printer{TextWidth: -1, TextCodePrefix: "    "}
		return strings.TrimSpace(string(p.Text(d)))
	},
	// cell shows a default in a table cell or a sentence.
	"cell": func(k Key) string {
		switch {
		case k.Placeholder:
			return k.Default
		case k.Default == "":
			return "none"
		}
		return "`" + strings.ReplaceAll(k.Default, "|", `\|`) + "`"
	},
}

var exampleTemplate = template.Must(template.New("example").Funcs(funcs).Parse(
	`# splicefleet agent configuration (/etc/splicefleet/agent.yaml).
#
# Every key is listed below, commented out and set to its default: a key
# left commented keeps its default. Uncomment and edit what this host
# needs: at least join, and the gossip keys and the trusted publishers'
# keyring must exist at the paths below (the systemd unit waits for them).
# Unknown keys are errors. Flags of "splicefleet agent" override this
# file; SIGHUP reloads the log level, the tags and the trust policy.
#
# The reference, docs/config.md, is generated with this file from the
# agent's source (agent/config.go); in the source tree, change the doc
# comments there and run "go test ./cmd/splicefleet/internal/configdoc -update".
{{range .}}
{{yamlComment .Doc -}}
{{if .Required}}# Required: the agent does not start without it.
{{end -}}
#{{.Name}}: {{.Value}}
{{end -}}
`))

var markdownTemplate = template.Must(template.New("markdown").Funcs(funcs).Parse(
	`# Agent configuration reference

<!-- Generated from agent/config.go by "go test ./cmd/splicefleet/internal/configdoc -update"; edit the doc comments there, not this file. -->

` + "`splicefleet agent --config FILE`" + ` reads its configuration from one YAML
file. The Debian package installs the [example file](#example-file) at the
end of this page, every key commented out and set to its default, as
` + "`/etc/splicefleet/agent.yaml`" + ` (its source is
[` + "`dist/agent.yaml`" + `](../dist/agent.yaml)). This page and that file are
generated from the agent's source, so they list exactly the keys the agent
reads, with its defaults.

- A key left out keeps its default. Keys marked **required** have no
  usable default: the agent refuses to start until they are set.
- Decoding is strict: an unknown key (a typo), a value of the wrong type
  or a second YAML document is an error that names the key, and the agent
  does not start.
- Durations are written like ` + "`30s`, `5m` or `1h30m`" + ` (units ` + "`ms`, `s`, `m`, `h`" + `).
- Flags of ` + "`splicefleet agent`" + ` override the file for the keys they
  cover; ` + "`splicefleet agent --help`" + ` lists them.
- ` + "`SIGHUP`" + ` reloads the log level, the tags and the trust policy
  (keyring and threshold) from the file; other keys take effect at the next
  start. A file that does not validate is refused and the running
  configuration kept.

Running agents with this file is described in the
[operator's guide](operators-guide.md).

| key | type | default |
| --- | --- | --- |
{{range .Keys}}| [` + "`{{.Name}}`" + `](#{{.Name}}) | {{.Type}} | {{if .Required}}**required**{{else}}{{cell .}}{{end}} |
{{end}}
## Keys
{{range .Keys}}
### ` + "`{{.Name}}`" + `

Type: {{.Type}}. Default: {{cell .}}.{{if .Required}} **Required**: without it the
agent refuses to start with "{{.Required}}".{{end}}

{{markdown .Doc}}
{{end}}
## Example file

` + "```yaml" + `
{{.Example}}` + "```" + `
`))
