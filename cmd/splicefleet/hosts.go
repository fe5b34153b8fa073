package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/rollout"
)

// newHostsCmd is `splicefleet hosts`: the hosts' own keys, with which each
// signs its reports in rollouts.
func newHostsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "show this host's key, and re-key a reinstalled host",
		Long: `Every agent signs its reports in rollouts with its own host key, made on its
first start (STATE_DIR/host.key). Every other agent pins a node's key the
first time it sees the node, and refuses reports signed by another key for
that name. A reinstalled host comes back with a new key: its reports do not
count until operators re-key it with a signed re-key, which every agent
verifies (the keyring and threshold of rollout commands) and takes.`,
		Example: `  # on the reinstalled host
  splicefleet hosts key
  # on any host, by operators
  splicefleet hosts rekey web-0007 --host-key 3q2-7w... --key ops.sec.asc --reason "reinstalled"`,
		Args: cobra.NoArgs,
	}
	var socket string
	key := &cobra.Command{
		Use:   "key",
		Short: "print this host's node name and host key (for a re-key)",
		Example: `  # on the reinstalled host
  splicefleet hosts key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var hk struct {
				Node string `json:"node"`
				Key  string `json:"key"`
			}
			if err := agent.NewControlClient(socket).Do("GET", "/v1/hostkey", nil, &hk); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s %s\n", hk.Node, hk.Key)
			return nil
		},
	}
	socketFlag(e, key, &socket)
	cmd.AddCommand(key, newRekeyCmd(e))
	return cmd
}

func newRekeyCmd(e *env) *cobra.Command {
	var socket, reason, hostKey string
	var sign docSigning
	cmd := &cobra.Command{
		Use:   "rekey NODE --host-key KEY --key SECRET.asc",
		Short: "sign a re-key: the fleet takes KEY as NODE's host key",
		Long: `Signs a re-key of NODE (--key, several for a threshold, or --signature made
elsewhere) and sends it to the local agent, which verifies it and gossips
it to the fleet. KEY is what 'splicefleet hosts key' prints on NODE. A
re-key is taken only when it was issued after the last one taken for
NODE, so an old one replayed is refused.`,
		Example: `  splicefleet hosts rekey web-0007 --host-key 3q2-7w... --key ops.sec.asc --reason "reinstalled"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := rollout.EncodeRekey(rollout.Rekey{Node: args[0], Key: hostKey, Reason: reason, Issued: e.now().UTC()})
			if err != nil {
				return &refusal{err}
			}
			sigs, err := sign.sign(e, body)
			if err != nil {
				return err
			}
			if _, err := postDoc(socket, "/v1/rekeys", &rollout.Document{Kind: rollout.KindRekey, Body: body, Signatures: sigs}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "rekey %s: the fleet takes host key %s for it\n", args[0], hostKey)
			return nil
		},
	}
	socketFlag(e, cmd, &socket)
	cmd.Flags().StringVar(&hostKey, "host-key", "", "NODE's new host key, as 'splicefleet hosts key' prints it on NODE")
	_ = cmd.MarkFlagRequired("host-key")
	sign.flags(cmd, "the re-key")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the log")
	return cmd
}
