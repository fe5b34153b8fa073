package agent

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// memberStatus is name's status as a sees it ("" when a does not list it).
func memberStatus(a *Agent, name string) string {
	for _, m := range a.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

// TestForceLeave: force-leave of a failed member makes every agent see it
// left; a member that is alive, or a name nobody knows, is refused
// through the control API (409, 404) and changes nothing.
func TestForceLeave(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(2)
	r := f.joinRogue("gone")
	waitMembers(t, agents, 3)
	if err := r.node.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the gone host is seen failed", func() error {
		for _, a := range agents {
			if s := memberStatus(a, "gone"); s != "failed" {
				return fmt.Errorf("%s sees it %q", a.Name(), s)
			}
		}
		return nil
	})

	c := NewControlClient(agents[0].cfg.ControlSocket)
	var refused *RefusedError
	err := c.Do("POST", "/v1/members/"+agents[1].Name()+"/force-leave", nil, nil)
	if !errors.As(err, &refused) || refused.Reason != "not_failed" || memberStatus(agents[0], agents[1].Name()) != "alive" {
		t.Errorf("force-leave of an alive member: %v", err)
	}
	if err := c.Do("POST", "/v1/members/nobody/force-leave", nil, nil); !errors.As(err, &refused) || refused.Reason != "not_member" {
		t.Errorf("force-leave of an unknown name: %v", err)
	}
	var res map[string]string
	if err := c.Do("POST", "/v1/members/gone/force-leave", nil, &res); err != nil || res["was"] != "failed" {
		t.Fatalf("force-leave of a failed member: %v %v", res, err)
	}
	eventually(t, 60*time.Second, "every agent sees the gone host left", func() error {
		for _, a := range agents {
			if s := memberStatus(a, "gone"); s != "left" && s != "" {
				return fmt.Errorf("%s sees it %q", a.Name(), s)
			}
		}
		return nil
	})
	if _, err := agents[1].ForceLeave("gone"); err != nil && memberStatus(agents[1], "gone") != "" {
		t.Errorf("force-leave of a member that left: %v", err)
	}
}
