package splice_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/splice"
)

// TestReadPatches: a reader without the lock sees every patch the
// journal records, with its state, while another Host holds the lock.
func TestReadPatches(t *testing.T) {
	e := newHostEnv(t)
	if got, err := splice.ReadPatches(e.stateDir); err != nil || len(got) != 0 {
		t.Fatalf("no journal: %v %v", got, err)
	}
	h := e.mustOpen()
	e.apply(h, e.bundle("a", 1, []string{"fa"}))
	e.apply(h, e.bundle("b", 2, []string{"fb"}))
	if _, _, err := h.Undo(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	got, err := splice.ReadPatches(e.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, p := range got {
		states = append(states, fmt.Sprintf("%s@%d=%s", p.ID, p.Version, p.State))
	}
	if s := strings.Join(states, ","); s != "a@1=applied,b@2=reverted" {
		t.Fatalf("patches %s", s)
	}
}

// TestReasonLabelsAreClosed: every refusal's label is in the list.
func TestReasonLabelsAreClosed(t *testing.T) {
	labels := splice.ReasonLabels()
	for _, reason := range []error{splice.ErrFormat, splice.ErrTruncated, splice.ErrTooLarge, splice.ErrVersion,
		splice.ErrSignature, splice.ErrManifest, splice.ErrDuplicateKey, splice.ErrExpired, splice.ErrModuleDigest, splice.ErrNotLivepatch,
		splice.ErrTargetMismatch, splice.ErrStack, errors.New("new reason")} {
		got := splice.Reason(&splice.RejectError{Reason: reason})
		if !slices.Contains(labels, got) {
			t.Errorf("Reason %q is not in ReasonLabels %v", got, labels)
		}
	}
	if labels[len(labels)-1] != "other" || len(labels) != 12 {
		t.Fatalf("labels %v", labels)
	}
}
