package agent

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestLogLinesNameTheNodeOnce: the agent's logger carries node=NAME on
// every line, so a line about another host names it under another key
// (member, reporter, ...): a second "node" attribute would make the line
// ambiguous in logfmt and a duplicate key in JSON.
func TestLogLinesNameTheNodeOnce(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	logCall := regexp.MustCompile(`\blog\.(Debug|Info|Warn|Error)\([^\n]*"node",`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			if logCall.MatchString(line) {
				t.Errorf("%s:%d logs a second node attribute: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}
