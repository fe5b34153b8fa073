package agent

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/splice"
)

// TestCheckChangesNothing: Check (publish's check before it sends, and
// publish --dry-run) judges a bundle and its plan as Publish and
// StartRollout would, under a 2-of-2 trust policy: a bundle or a plan
// with one signature is refused, saying which, and the plan is counted
// as refused; a good pair is previewed with its stages and cohorts; in
// every case nothing is stored, announced or followed.
func TestCheckChangesNothing(t *testing.T) {
	f := newTestFleet(t)
	second := newSigner(t, "Second")
	cfg := f.config("host")
	cfg.Keyring = filepath.Join(f.dir, "two.asc")
	cfg.Threshold = 2
	writeKeyring(t, cfg.Keyring, f.signer, second)
	h := f.start(cfg)
	before := stateOf(t, h)

	both := signedBundle(t, splice.Manifest{ID: "two", Version: 1}, 0, f.signer, second)
	raw, err := both.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	digest := splice.Digest(both.Manifest)
	plan := "id: two\nbundle: " + digest + "\nstages:\n  - percent: 50\n  - percent: 100\n"

	one := signedBundle(t, splice.Manifest{ID: "one", Version: 1}, 0, f.signer)
	rawOne, err := one.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Check(rawOne, nil); !splice.IsReject(err) || !strings.HasPrefix(err.Error(), "bundle: ") || !strings.Contains(err.Error(), "1 of 2 required signatures") {
		t.Errorf("a bundle with one of two signatures: %v", err)
	}
	_, err = h.Check(raw, signPlan(t, plan, f.signer))
	if !errors.Is(err, ErrRolloutRefused) || !strings.HasPrefix(err.Error(), "plan: ") || !strings.Contains(err.Error(), "1 of 2 required signatures") {
		t.Errorf("a plan with one of two signatures: %v", err)
	}
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "plan", "reason", "signature")
	other := "id: two\nbundle: " + strings.Repeat("ab", 32) + "\nstages:\n  - percent: 100\n"
	if _, err := h.Check(raw, signPlan(t, other, f.signer, second)); !errors.Is(err, ErrRolloutRefused) || !strings.Contains(err.Error(), "names bundle abababababab, not this bundle") {
		t.Errorf("a plan for another bundle: %v", err)
	}

	res, err := h.Check(raw, signPlan(t, plan, f.signer, second))
	if err != nil {
		t.Fatalf("a bundle and a plan with both signatures: %v", err)
	}
	if res.ID != "two" || res.ManifestDigest != digest || len(res.Signers) != 2 || len(res.PlanSigners) != 2 || res.Held || res.Following || res.Members != 1 ||
		res.Rollout == nil || len(res.Rollout.Stages) != 2 || res.Rollout.Stages[1].Cohort != 1 || res.Rollout.ID != "two" {
		t.Errorf("check: %+v, rollout %+v", res, res.Rollout)
	}
	assertUnchanged(t, h, before)
	if sts := h.Rollouts(); len(sts) != 0 {
		t.Errorf("check started %d rollouts", len(sts))
	}
}
