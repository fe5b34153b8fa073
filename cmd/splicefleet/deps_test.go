package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryLinksNoTestCode: the splicefleet binary links no test
// helper and not the testing package (which also registers test flags in
// the binary). It asks the go command, as `go list -deps` shows it.
func TestBinaryLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps named only %d packages: %v", len(deps), deps)
	}
	forbidden := map[string]bool{
		"testing": true,
		"github.com/splicefleet/splicefleet/internal/testutil": true,
		"github.com/splicefleet/splicefleet/internal/gpgtest":  true,
		"github.com/splicefleet/splicefleet/internal/testdisk": true,
		"github.com/splicefleet/splicefleet/internal/testuid":  true,
	}
	for _, d := range deps {
		if forbidden[d] {
			t.Errorf("the binary links %s", d)
		}
	}
}
