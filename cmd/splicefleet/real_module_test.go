package main

import (
	"strings"
	"testing"
)

// The publisher's path with a real livepatch module, built by gcc and kbuild
// against Debian's 6.1 cloud kernel headers (kmod/testdata/livepatch-cmdline
// has its source and build script).
func TestRealLivepatchModule(t *testing.T) {
	c := newCLI(t)
	c.ok("signing-key", "generate", "--uid", "Release <rel@example.com>", "--out", c.path("rel"))
	out := c.ok("create", "--module", "../../kmod/testdata/livepatch-cmdline/livepatch_cmdline.ko",
		"--id", "cmdline", "--version", "1", "-o", c.path("cmdline.splice"))
	for _, want := range []string{"for 6.1.0-", "-cloud-amd64/x86_64", "module livepatch_cmdline", "replaces cmdline_proc_show"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q: %s", want, out)
		}
	}
	c.ok("sign", "--key", c.path("rel.sec.asc"), c.path("cmdline.splice"))
	out = c.ok("verify", "--keyring", c.path("rel.pub.asc"), c.path("cmdline.splice"))
	if !strings.Contains(out, "OK ") || !strings.Contains(out, "Release <rel@example.com>") {
		t.Fatalf("verify: %s", out)
	}
}
