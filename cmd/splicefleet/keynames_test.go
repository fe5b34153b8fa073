package main

import (
	"encoding/base64"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestKeyCommandNames: the two kinds of secret have names that cannot be
// mistaken for each other, signing-key and gossip-key; the old names, key
// and keys, still work for a release, say on stderr (one line, stdout
// untouched) what replaces them, and are not offered by help or
// completion.
func TestKeyCommandNames(t *testing.T) {
	c := newCLI(t)
	gossipKey := regexp.MustCompile(`^[A-Za-z0-9+/]{43}=\n$`)

	// The new names.
	code, out, errs := c.run("gossip-key", "generate")
	if k, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(out)); code != 0 || !gossipKey.MatchString(out) || len(k) != 32 || errs != "" {
		t.Errorf("gossip-key generate: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = c.run("signing-key", "generate", "--uid", "Ops <ops@example.com>", "--out", c.path("new"))
	if code != 0 || !strings.Contains(out, "generated ") || errs != "" {
		t.Errorf("signing-key generate: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(c.path("new.pub.asc")); err != nil {
		t.Error(err)
	}

	// The old names: they work, and say so on stderr only.
	code, out, errs = c.run("keys", "generate")
	if code != 0 || !gossipKey.MatchString(out) || errs != "splicefleet: \"keys generate\" is deprecated and will be removed in a future release: use \"gossip-key generate\"\n" {
		t.Errorf("keys generate: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = c.run("key", "generate", "--uid", "Ops <ops@example.com>", "--out", c.path("old"))
	if code != 0 || !strings.Contains(out, "generated ") || errs != "splicefleet: \"key generate\" is deprecated and will be removed in a future release: use \"signing-key generate\"\n" {
		t.Errorf("key generate: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
	if _, err := os.Stat(c.path("old.sec.asc")); err != nil {
		t.Error(err)
	}
	// A client command under the old name says so before it looks for
	// the agent (here, a socket that is not there).
	code, _, errs = c.run("keys", "list", "--control-socket", c.path("none.sock"))
	if code != exitError || !strings.HasPrefix(errs, "splicefleet: \"keys list\" is deprecated and will be removed in a future release: use \"gossip-key list\"\n") {
		t.Errorf("keys list: exit %d, stderr %q", code, errs)
	}

	// Help and completion offer the new names only.
	help := c.ok("--help")
	commands := regexp.MustCompile(`(?m)^  (\S+) `).FindAllStringSubmatch(help, -1)
	var names []string
	for _, m := range commands {
		names = append(names, m[1])
	}
	listed := " " + strings.Join(names, " ") + " "
	for _, want := range []string{"signing-key", "gossip-key"} {
		if !strings.Contains(listed, " "+want+" ") {
			t.Errorf("help does not list %s: %s", want, listed)
		}
	}
	for _, old := range []string{"key", "keys"} {
		if strings.Contains(listed, " "+old+" ") {
			t.Errorf("help lists %s: %s", old, listed)
		}
	}
	_, out, _ = c.run("__complete", "ke")
	if strings.Contains(out, "key\n") || strings.Contains(out, "keys\n") {
		t.Errorf("completion offers an old name:\n%s", out)
	}
	_, out, _ = c.run("__complete", "")
	if !strings.Contains(out, "gossip-key\t") || !strings.Contains(out, "signing-key\t") {
		t.Errorf("completion lacks a new name:\n%s", out)
	}
}
