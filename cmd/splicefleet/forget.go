package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

func newForgetCmd(e *env) *cobra.Command {
	var socket, reason, bodyIn, bodyOut string
	var sign docSigning
	cmd := &cobra.Command{
		Use:   "forget BUNDLE [--key SECRET.asc | --signature SIG.asc]",
		Short: "Drop a held bundle's copy for distribution now: on this host, or on every host with a signed command",
		Long: `Drop a bundle from the agents' stores now, instead of waiting for the
agent's bundle_retention. BUNDLE is a manifest digest (splicefleet
inspect shows it), at least 8 of its first digits, or ID@VERSION of a
bundle the local agent holds.

Without --key or --signature, only the local agent drops its copy (the
control socket is root's). With them, a forget command is signed like
every operator command and sent to the local agent, which gossips it;
every agent verifies it against its trust policy and drops its copy, and
agents that were away get it from their peers.

A bundle that a running, paused or done rollout rolls out is refused
(exit 1): hosts in a live rollout, and hosts that join a done one later,
apply it from these copies. Halt or revoke the rollout first. Forgetting
never undoes a patch: a host that applied the bundle keeps it applied,
and keeps its own copy to re-apply it at boot.

To sign elsewhere: --body-out FILE writes the command's bytes and sends
nothing; send it with --body FILE --signature FILE.asc.`,
		Example: `  splicefleet forget cve-2026-1234@2
  splicefleet forget 3f1c0a9e --key ops.sec.asc --reason "superseded by version 3"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := agent.NewControlClient(socket)
			digest, name, err := resolveBundle(c, args[0])
			if err != nil {
				return err
			}
			fleet := sign.given() || bodyIn != "" || bodyOut != ""
			if !fleet {
				var ent splice.Entry
				if err := c.Do("POST", "/v1/bundles/"+digest+"/forget", nil, &ent); err != nil {
					return asRefusal(err)
				}
				fmt.Fprintf(e.stdout, "forgot %s@%d (manifest %s) on this host; other hosts keep their copies (sign a forget with --key to drop them everywhere)\n",
					ent.ID, ent.Version, ent.Digest)
				return nil
			}
			body, err := rollout.EncodeCommand(rollout.Command{Action: rollout.ActionForget, Bundle: digest, Reason: reason, Issued: e.now().UTC()})
			if err != nil {
				return &refusal{err}
			}
			if bodyOut != "" {
				if err := os.WriteFile(bodyOut, body, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "wrote forget of %s to %s; sign it (gpg --armor --detach-sign %s), then send it:\n  splicefleet forget %s --body %s --signature %s.asc\n",
					name, bodyOut, bodyOut, digest, bodyOut, bodyOut)
				return nil
			}
			if bodyIn != "" {
				if body, err = readFile(bodyIn, 64<<10); err != nil {
					return err
				}
				given, err := rollout.DecodeCommand(body)
				if err != nil {
					return &refusal{fmt.Errorf("%s: %w", bodyIn, err)}
				}
				if given.Action != rollout.ActionForget || given.Bundle != digest {
					return &refusal{fmt.Errorf("%s is a %s, not a forget of bundle %s", bodyIn, given.Action, digest)}
				}
			}
			sigs, err := sign.sign(e, body)
			if err != nil {
				return err
			}
			if _, err := postDoc(socket, "/v1/commands", &rollout.Document{Kind: rollout.KindCommand, Body: body, Signatures: sigs}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "forget of %s accepted here and sent to the fleet: every agent drops its copy (one where a live rollout still uses it refuses)\n", name)
			return nil
		},
	}
	socketFlag(e, cmd, &socket)
	sign.flags(cmd, "a fleet-wide forget")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the people reading the logs")
	cmd.Flags().StringVar(&bodyOut, "body-out", "", "write the forget command's bytes to FILE for signing elsewhere, and send nothing")
	cmd.Flags().StringVar(&bodyIn, "body", "", "send the forget command in FILE (made by --body-out) with its --signature(s)")
	cmd.MarkFlagsMutuallyExclusive("body", "body-out")
	return cmd
}

// resolveBundle turns a manifest digest, a prefix of one (8 digits or
// more) or ID@VERSION into a digest, from what the local agent holds; a
// whole digest is taken as it is (a fleet-wide forget may name a bundle
// this host does not hold).
func resolveBundle(c *agent.ControlClient, arg string) (digest, name string, err error) {
	if splice.ValidDigest(arg) {
		return arg, arg[:12], nil
	}
	var held []splice.Entry
	if err := c.Do("GET", "/v1/bundles", nil, &held); err != nil {
		return "", "", err
	}
	var found []splice.Entry
	for _, ent := range held {
		id, v, ok := strings.Cut(arg, "@")
		switch {
		case ok && ent.ID == id && strconv.FormatUint(ent.Version, 10) == v:
			found = append(found, ent)
		case !ok && len(arg) >= 8 && strings.HasPrefix(ent.Digest, arg):
			found = append(found, ent)
		}
	}
	switch len(found) {
	case 0:
		return "", "", &refusal{fmt.Errorf("%s: the local agent holds no such bundle (give the whole manifest digest, 64 hex digits, to forget it elsewhere)", arg)}
	case 1:
		return found[0].Digest, fmt.Sprintf("%s@%d", found[0].ID, found[0].Version), nil
	}
	return "", "", &refusal{fmt.Errorf("%q names %d bundles; give more digits of the manifest digest", arg, len(found))}
}

// asRefusal makes an agent's refusal exit 1.
func asRefusal(err error) error {
	var r *agent.RefusedError
	if errors.As(err, &r) {
		return &refusal{err}
	}
	return err
}
