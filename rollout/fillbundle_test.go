package rollout

import (
	"errors"
	"strings"
	"testing"
)

// TestFillBundle: a plan that leaves bundle: out gets bundle: DIGEST as
// its first key and keeps every other byte (comments, a document
// marker); a plan that names a bundle is left as it is; a flow-style
// plan is refused with the line to add.
func TestFillBundle(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	in := "# the fix\n---\nid: fix # comment\nstages:\n  - percent: 100\n"
	out, filled, err := FillBundle([]byte(in), digest)
	if err != nil || !filled {
		t.Fatalf("fill: %v %v", filled, err)
	}
	if want := "# the fix\n---\nbundle: " + digest + "\nid: fix # comment\nstages:\n  - percent: 100\n"; string(out) != want {
		t.Errorf("filled plan:\n%s\nwant:\n%s", out, want)
	}
	p, err := DecodePlan(out)
	if err != nil || p.Bundle != digest || p.ID != "fix" {
		t.Errorf("the filled plan decodes to %+v, %v", p, err)
	}
	named := "id: fix\nbundle: " + strings.Repeat("cd", 32) + "\nstages:\n  - percent: 100\n"
	if out, filled, err := FillBundle([]byte(named), digest); err != nil || filled || string(out) != named {
		t.Errorf("a plan naming its bundle changed: %v %v\n%s", filled, err, out)
	}
	if _, _, err := FillBundle([]byte("{id: fix, stages: [{percent: 100}]}\n"), digest); !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), "add bundle: "+digest) {
		t.Errorf("a flow-style plan: %v", err)
	}
}
