package main

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// Shell completion of live values (cobra's dynamic completion): rollout
// ids from the local agent, the patches applied on this host, and the
// members the agent knows. The agent is found as the command itself would
// find it (--control-socket, $SPLICEFLEET_CONTROL_SOCKET, the
// configuration's control_socket) and asked with a short deadline; when it
// does not answer, nothing is offered, and never file names.

// completeTimeout bounds a completion's question to the agent: a shell
// waits on it.
const completeTimeout = 2 * time.Second

// addCompletions sets the live completions on the commands below root.
func addCompletions(e *env, root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		switch {
		case c.Parent() != nil && c.Parent().Name() == "rollout" && strings.Contains(c.Use, "ROLLOUT"):
			c.ValidArgsFunction = firstArg(func(cmd *cobra.Command) []string { return rolloutIDs(e, cmd) })
		case c.Name() == "view" || c.Name() == "undo":
			c.ValidArgsFunction = firstArg(livePatches)
		case c.Name() == "force-leave":
			c.ValidArgsFunction = firstArg(func(cmd *cobra.Command) []string { return memberNames(e, cmd, "failed") })
		}
	}
	walk(root)
}

// firstArg completes the first argument with what values says, and
// nothing after it.
func firstArg(values func(cmd *cobra.Command) []string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, v := range values(cmd) {
			if strings.HasPrefix(v, toComplete) {
				out = append(out, v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// askAgent decodes what the local agent answers at path into out, within
// completeTimeout; false when it cannot be asked.
func askAgent(e *env, cmd *cobra.Command, path string, out any) bool {
	flag, _ := cmd.Flags().GetString("control-socket")
	config, _ := cmd.Flags().GetString("config")
	socket, err := findSocket(e, cmd.Flags().Changed("control-socket"), flag, config, defaultAgentConfig)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- agent.NewControlClient(socket).Do("GET", path, nil, out) }()
	select {
	case err := <-done:
		return err == nil
	case <-ctx.Done():
		return false
	}
}

// rolloutIDs are the ids of the rollouts the local agent follows, newest
// last.
func rolloutIDs(e *env, cmd *cobra.Command) []string {
	var sts []rollout.Status
	if !askAgent(e, cmd, "/v1/rollouts", &sts) {
		return nil
	}
	var ids []string
	for _, st := range sts {
		if !slices.Contains(ids, st.ID) {
			ids = append(ids, st.ID)
		}
	}
	return ids
}

// memberNames are the names of the members the local agent knows, those
// with status only when it is set.
func memberNames(e *env, cmd *cobra.Command, status string) []string {
	var ms []gossip.Member
	if !askAgent(e, cmd, "/v1/members", &ms) {
		return nil
	}
	var names []string
	for _, m := range ms {
		if status == "" || m.Status == status {
			names = append(names, m.Name)
		}
	}
	slices.Sort(names)
	return names
}

// livePatches are the ids of the patches applied on this host, read from
// its journal (--state-dir, else the agent's default) without taking the
// host's lock.
func livePatches(cmd *cobra.Command) []string {
	dir, _ := cmd.Flags().GetString("state-dir")
	live, err := splice.LiveSummary(cmp.Or(dir, agent.DefaultConfig().StateDir))
	if err != nil {
		return nil
	}
	var ids []string
	for _, l := range live {
		id, _, _ := strings.Cut(l, "@")
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}
