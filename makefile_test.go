package splicefleet_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestMakeHelpIsPlainInAPipe: make help, read by a program (a pipe, not
// a terminal), prints no colour escapes, and every description starts
// in the same column however long the target's name.
func TestMakeHelpIsPlainInAPipe(t *testing.T) {
	out, err := exec.Command("make", "--no-print-directory", "help").Output()
	if err != nil {
		t.Fatalf("make help: %v", err)
	}
	if strings.Contains(string(out), "\x1b") {
		t.Errorf("make help prints escapes into a pipe:\n%q", out)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) < 5 {
		t.Fatalf("make help lists %d targets:\n%s", len(lines), out)
	}
	col := -1
	for _, l := range lines {
		fields := strings.Fields(l)
		if len(fields) < 2 {
			t.Fatalf("line %q has no description", l)
		}
		name := strings.Index(l, fields[0]) + len(fields[0])
		at := name + strings.Index(l[name:], fields[1])
		if col < 0 {
			col = at
		}
		if at != col {
			t.Errorf("description of %s starts in column %d, others in %d", fields[0], at, col)
		}
	}
}
