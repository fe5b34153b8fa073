// Package configdoc generates the agent's configuration reference
// (docs/config.md) and its commented default configuration file
// (dist/agent.yaml, shipped as /etc/splicefleet/agent.yaml) from the code,
// and its manual page, splicefleet-agent.yaml(5) (written in roff by
// package roff into cmd/splicefleet, which embeds it and installs it with
// the commands' pages), so that none can drift from what the agent reads.
//
// Three sources, each the authority for one thing:
//
//   - the Go source of the configuration type (agent/config.go), read with
//     go/parser and go/ast, gives the keys (the yaml struct tags), their
//     order and their descriptions (the fields' doc comments, whose Go
//     field names are rewritten as the keys a user writes);
//   - reflection over the type gives the user-facing type of each key
//     (string, list of strings, duration, ...), as the YAML decoder sees it,
//     and over the value of agent.DefaultConfig, looked up by yaml tag, the
//     defaults;
//   - agent's Validate, run on the defaults, says which keys have no usable
//     default and must be set.
//
// Nothing lists the keys: a new field appears in both files when they are
// regenerated, and a field without a doc comment, or of a type the
// renderer does not know, is an error rather than a silent gap. A default
// that depends on the machine (the node name is the hostname) is shown as
// a placeholder, and the package checks that it still does.
//
// The tests regenerate both files in memory and fail when the committed
// ones differ; go test ./cmd/splicefleet/internal/configdoc -update rewrites them. Only the
// standard library is used to generate; the tests decode the example with
// the agent's own decoder.
package configdoc
