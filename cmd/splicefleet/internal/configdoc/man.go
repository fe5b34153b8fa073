package configdoc

import (
	"go/doc/comment"
	"strings"

	"github.com/splicefleet/splicefleet/internal/roff"
)

// ManName is the configuration's manual page, section 5: the file is
// /etc/splicefleet/agent.yaml, and the page is named after the package
// so that it cannot clash with another's agent.yaml.
const ManName = "splicefleet-agent.yaml"

// Man renders the configuration's manual page (section 5). Its title
// line names the source as "splicefleet", without a version: the
// binary's gendocs writes the version in when it installs the page.
func Man(keys []Key) []byte {
	p := roff.NewPage(ManName, "5", "splicefleet", "splicefleet manual")
	p.Section("name")
	p.Raw(roff.Escape(ManName) + ` \- configuration of the splicefleet agent`)
	p.Section("synopsis")
	p.Raw(roff.Italic("/etc/splicefleet/agent.yaml"))
	p.Section("description")
	p.Text(`splicefleet agent --config FILE reads its configuration from one YAML
file. The package installs /etc/splicefleet/agent.yaml with every key
commented out and set to its default; this page lists the same keys, with
their types and defaults, generated from the agent's source.

A key left out keeps its default. A key marked required has no usable
default: the agent refuses to start until it is set. Decoding is strict:
an unknown key (a typo), a value of the wrong type or a second YAML
document is an error that names the key, and the agent does not start.
Durations are written like 30s, 5m or 1h30m (units ms, s, m, h).

Flags of splicefleet agent override the file for the keys they cover.
SIGHUP reloads the log level, the tags and the trust policy (keyring and
threshold) from the file; other keys take effect at the next start. A file
that does not validate is refused and the running configuration kept.
splicefleet agent --check-config checks a file and the files it names
without starting the agent.`)
	p.Section("keys")
	for _, k := range keys {
		head := "Type: " + k.Type + ". Default: " + manDefault(k) + "."
		if k.Required != "" {
			head += ` Required: without it the agent refuses to start with "` + k.Required + `".`
		}
		p.Item(roff.Bold(k.Name), head+"\n\n"+docText(k.Doc))
	}
	p.Section("files")
	p.Item(roff.Italic("/etc/splicefleet/agent.yaml"), "The configuration, read by splicefleet agent --config (as the systemd unit runs it), by the host verbs (apply, undo, view, boot, verify) for the trust policy, the state directory and the kernel, and by the client commands for control_socket.")
	p.Section("examples")
	p.Text("A host of a fleet, in the canary ring, with the package's paths for the keys:")
	p.Example(`join: [10.0.0.11:7946, 10.0.0.12:7946]
tags:
  ring: canary
log_level: info`)
	p.Section("see also")
	p.Raw(".BR splicefleet (1),\n.BR splicefleet\\-agent (1)")
	return p.Bytes()
}

// manDefault shows a default in a sentence.
func manDefault(k Key) string {
	switch {
	case k.Placeholder:
		return k.Default
	case k.Default == "":
		return "none"
	}
	return "`" + k.Default + "`"
}

// docText is a key's description as plain text for roff.Format: one line
// a paragraph, code blocks indented.
func docText(d *comment.Doc) string {
	p := comment.Printer{TextWidth: -1, TextCodePrefix: "    "}
	return strings.TrimSpace(string(p.Text(d)))
}
