package agent

// The agent's rollout entry points for the control API: accept a signed
// document here, then gossip it; list and find rollouts as judged.

import "github.com/splicefleet/splicefleet/rollout"

// announceDoc gossips where a stored document can be fetched.
func (a *Agent) announceDoc(d *rollout.Document) error {
	payload, err := rollout.EncodeDocAnnouncement(rollout.DocAnnouncement{Kind: d.Kind, Digest: d.Digest(), Origin: a.advertisedHTTP()})
	if err != nil {
		return err
	}
	return a.node.Broadcast(rollout.DocEvent, payload)
}

// StartRollout accepts a signed plan for a bundle this agent holds and
// gossips it to the fleet.
func (a *Agent) StartRollout(d *rollout.Document) (rollout.Status, error) {
	st, err := a.ro.AcceptPlan(d)
	if err != nil {
		return st, err
	}
	return st, a.announceDoc(d)
}

// Command accepts a signed operator command and gossips it to the fleet.
func (a *Agent) Command(d *rollout.Document) (rollout.Status, error) {
	st, err := a.ro.AcceptCommand(d)
	if err != nil {
		return st, err
	}
	return st, a.announceDoc(d)
}

// Rollouts lists the rollouts as this agent judges them.
func (a *Agent) Rollouts() []rollout.Status { return a.ro.Statuses() }

// Rollout is one rollout, by plan ID or plan digest prefix.
func (a *Agent) Rollout(key string) (rollout.Status, error) { return a.ro.Status(key) }
