package agent

import (
	"fmt"
	"strings"

	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// CheckResult is what publishing a bundle (and starting its plan) would
// do, as this agent judges it: Check stores, announces and follows
// nothing.
type CheckResult struct {
	ID             string   `json:"id"`
	Version        uint64   `json:"version"`
	ManifestDigest string   `json:"manifest_digest"`
	Signers        []string `json:"signers"`
	// Held says this agent holds the bundle already.
	Held bool `json:"held"`
	// Members counts the cluster's members this agent sees, itself
	// included.
	Members int `json:"members"`
	// Rollout is the plan's rollout as it would start now: its stages
	// with the cohorts as this agent sees the cluster. Following says the
	// agent follows this very plan already (Rollout is then where it
	// stands).
	Rollout     *rollout.Status `json:"rollout,omitempty"`
	PlanSigners []string        `json:"plan_signers,omitempty"`
	Following   bool            `json:"following,omitempty"`
}

// Check verifies a bundle under the trust policy, as Publish would, and
// a signed plan for it (signatures and threshold, syntax and gates, the
// bundle it names, a rollout id not taken), as StartRollout would. It
// changes nothing: it is publish --dry-run, and the check publish makes
// before it sends anything. Refusals say "bundle" or "plan" first, and wrap *splice.RejectError (the
// bundle) or ErrRolloutRefused (the plan); a refused plan is counted as
// one sent would be.
func (a *Agent) Check(raw []byte, plan *rollout.Document) (CheckResult, error) {
	var res CheckResult
	b, err := splice.Decode(strings.NewReader(string(raw)))
	if err != nil {
		return res, fmt.Errorf("bundle: %w", err)
	}
	v, err := splice.Verify(b, a.policy.Load(), a.now())
	if err != nil {
		return res, fmt.Errorf("bundle: %w", err)
	}
	res = CheckResult{ID: v.Manifest.ID, Version: v.Manifest.Version, ManifestDigest: v.ManifestDigest, Signers: v.Signers,
		Held: a.store.Has(v.ManifestDigest)}
	if plan == nil {
		res.Members = len(a.node.Members())
		return res, nil
	}
	refuse := func(err error) (CheckResult, error) {
		a.metricRefused("plan", err)
		return res, fmt.Errorf("plan: %w: %w", ErrRolloutRefused, err)
	}
	vp, err := rollout.VerifyPlan(plan, a.policy.Load(), a.now())
	if err != nil {
		return refuse(err)
	}
	if vp.Plan.Bundle != v.ManifestDigest {
		return refuse(fmt.Errorf("plan %s names bundle %s, not this bundle %s", vp.Plan.ID, vp.Plan.Bundle[:12], v.ManifestDigest[:12]))
	}
	res.PlanSigners = vp.Signers
	r := a.ro
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cluster()
	res.Members = len(c.members)
	if rec, ok := r.recs[vp.Digest]; ok {
		st := r.status[rec.Rollout.Digest]
		res.Rollout, res.Following = &st, true
		return res, nil
	}
	for _, rec := range r.recs {
		if rec.Rollout.Plan.ID == vp.Plan.ID {
			return refuse(fmt.Errorf("rollout id %s is taken by plan %s; a new plan needs a new id", vp.Plan.ID, rec.Rollout.Digest[:12]))
		}
	}
	m := v.Manifest
	ro := rollout.New(vp, rollout.KernelTarget{Release: m.Target.Release, Arch: m.Target.Arch, BuildID: m.Target.BuildID}, a.now())
	st := ro.Evaluate(rollout.View{Self: a.cfg.NodeName, Members: c.members, Reports: map[string]rollout.Evidence{}}, a.now())
	res.Rollout = &st
	return res, nil
}
