package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The layering, as `go list -deps` shows it: the packages each one must
// never link. The binary links no test helper and not the testing
// package (which also registers test flags in the binary); the agent does
// not link the simulated kernel (cmd/splicefleet opens it and passes it
// in); splice knows neither the kernel backend, the gossip, the agent nor
// the network; distrib moves bundles and knows no gossip, rollouts or
// kernel; the ELF reader is ground floor, below its three readers.
var mustNotLink = map[string][]string{
	".": {"testing",
		"github.com/splicefleet/splicefleet/internal/testutil",
		"github.com/splicefleet/splicefleet/internal/bundletest",
		"github.com/splicefleet/splicefleet/internal/gpgtest",
		"github.com/splicefleet/splicefleet/internal/testdisk",
		"github.com/splicefleet/splicefleet/internal/testuid"},
	"../../agent": {"testing",
		"github.com/splicefleet/splicefleet/kmod/sim",
		"github.com/splicefleet/splicefleet/internal/fakemodule",
		"github.com/splicefleet/splicefleet/cmd/splicefleet/internal/demofleet"},
	"../../splice": {"testing", "net/http",
		"github.com/splicefleet/splicefleet/kmod",
		"github.com/splicefleet/splicefleet/gossip",
		"github.com/splicefleet/splicefleet/agent"},
	"../../distrib": {"testing",
		"github.com/splicefleet/splicefleet/agent",
		"github.com/splicefleet/splicefleet/gossip",
		"github.com/splicefleet/splicefleet/rollout",
		"github.com/splicefleet/splicefleet/kmod"},
	"../../rollout": {"testing", "net/http",
		"github.com/splicefleet/splicefleet/kmod",
		"github.com/splicefleet/splicefleet/agent"},
	"../../internal/elf64": {"testing",
		"github.com/splicefleet/splicefleet/kmod",
		"github.com/splicefleet/splicefleet/klpgen",
		"github.com/splicefleet/splicefleet/objdiff"},
}

func TestLayering(t *testing.T) {
	for pkg, forbidden := range mustNotLink {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[d] = true
		}
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s named only %d packages", pkg, len(deps))
		}
		for _, f := range forbidden {
			if deps[f] {
				t.Errorf("%s links %s", pkg, f)
			}
		}
	}
}
