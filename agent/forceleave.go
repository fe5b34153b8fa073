package agent

import (
	"errors"
	"fmt"
)

var (
	// ErrNoMember reports a node name the member list does not hold.
	ErrNoMember = errors.New("no such member")
	// ErrMemberAlive refuses a force-leave of a member that is alive or
	// leaving: it would refute it.
	ErrMemberAlive = errors.New("member is not failed")
)

// ForceLeave marks a failed member as left across the cluster, for a
// host that is gone for good: members stop probing it and reap it after
// the tombstone time, as for a member that left. It refuses an unknown
// name (ErrNoMember) and a member that is alive or leaving
// (ErrMemberAlive); a member that left already is left as it is. It
// returns the member's status before.
func (a *Agent) ForceLeave(name string) (string, error) {
	for _, m := range a.node.Members() {
		if m.Name != name {
			continue
		}
		switch m.Status {
		case "failed":
			if err := a.node.ForceLeave(name); err != nil {
				return m.Status, err
			}
			a.log.Info("force-leave", "member", name)
			return m.Status, nil
		case "left":
			return m.Status, nil
		default:
			return m.Status, fmt.Errorf("%w: %s is %s; force-leave is for a failed host (stop its agent, which leaves by itself)", ErrMemberAlive, name, m.Status)
		}
	}
	return "", fmt.Errorf("%w: %s", ErrNoMember, name)
}
