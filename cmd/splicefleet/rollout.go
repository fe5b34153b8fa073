package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/internal/safetext"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// runHealthCommand runs the operator's health command (no shell) until
// ctx ends; its output is kept short in the error.
func runHealthCommand(ctx context.Context, argv []string) error {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("timed out: %w", ctx.Err())
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 160 {
			msg = msg[:160] + "..."
		}
		if msg != "" {
			return fmt.Errorf("%w: %s", err, msg)
		}
	}
	return err
}

// signers reads the secret keys given with --key.
func signers(e *env, keys []string, passFile string) ([]*signing.Signer, error) {
	var out []*signing.Signer
	for _, k := range keys {
		pass, err := passphrase(e, passFile)
		if err != nil {
			return nil, err
		}
		raw, err := readFile(k, signing.MaxSecretKeySize)
		if err != nil {
			return nil, err
		}
		s, err := signing.ReadSigner(raw, pass, e.now())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// docSigning is how a command signs a document: with secret keys (--key,
// repeatable for a threshold) and detached signatures made elsewhere
// (--signature), the flags every command that signs a plan, an operator
// command or a re-key shares.
type docSigning struct {
	keys, sigFiles []string
	passFile       string
}

// flags adds the signing flags to cmd; what names the signed document in
// their help ("the plan", "the re-key").
func (d *docSigning) flags(cmd *cobra.Command, what string) {
	cmd.Flags().StringArrayVar(&d.keys, "key", nil, "secret key to sign "+what+" with (repeat for a threshold)")
	cmd.Flags().StringArrayVar(&d.sigFiles, "signature", nil, "detached signature over "+what+" made elsewhere")
	cmd.Flags().StringVar(&d.passFile, "passphrase-file", "", "file holding the secret key's passphrase (or SPLICEFLEET_PASSPHRASE)")
}

// given reports whether any key or signature was given.
func (d *docSigning) given() bool { return len(d.keys) > 0 || len(d.sigFiles) > 0 }

// sign signs body as the flags say (see signDoc).
func (d *docSigning) sign(e *env, body []byte) ([][]byte, error) {
	return signDoc(e, body, d.keys, d.sigFiles, d.passFile)
}

// signDoc signs body with every key and adds the detached signatures read
// from files (armored or binary, several per file allowed).
func signDoc(e *env, body []byte, keys, sigFiles []string, passFile string) ([][]byte, error) {
	ss, err := signers(e, keys, passFile)
	if err != nil {
		return nil, err
	}
	var sigs [][]byte
	for _, s := range ss {
		sig, err := s.Sign(body, e.now())
		if err != nil {
			return nil, err
		}
		sigs = append(sigs, sig)
	}
	for _, f := range sigFiles {
		raw, err := readFile(f, signing.MaxSignatures*signing.MaxSignatureSize*2)
		if err != nil {
			return nil, err
		}
		more, err := signing.SplitSignatures(raw)
		if err != nil {
			return nil, &refusal{fmt.Errorf("%s: %w", f, err)}
		}
		sigs = append(sigs, more...)
	}
	if len(sigs) == 0 {
		return nil, errors.New("sign it: give --key SECRET.asc, or --signature SIG.asc made with gpg --detach-sign")
	}
	return sigs, nil
}

// postDoc sends a signed document to the agent; a refusal exits 1.
func postDoc(socket, path string, d *rollout.Document) (rollout.Status, error) {
	var st rollout.Status
	wire, err := d.Encode()
	if err != nil {
		return st, &refusal{err}
	}
	if err := agent.NewControlClient(socket).Do("POST", path, bytes.NewReader(wire), &st); err != nil {
		var r *agent.RefusedError
		if errors.As(err, &r) {
			return st, &refusal{err}
		}
		return st, err
	}
	return st, nil
}

// preparePlan reads and validates a plan for the bundle in raw (read from
// bundlePath) and signs it. Nothing is sent.
func preparePlan(e *env, raw []byte, bundlePath, planPath string, sign docSigning) (*rollout.Document, error) {
	body, err := readFile(planPath, rollout.MaxPlanSize)
	if err != nil {
		return nil, err
	}
	b, err := splice.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, &refusal{fmt.Errorf("%s: %w", bundlePath, err)}
	}
	bundle := splice.Digest(b.Manifest)
	// bundle: left out: the digest of the bundle published is what the
	// plan names, signed with it; a signature made elsewhere covers the
	// file as it is, so such a plan must name it.
	body, filled, err := rollout.FillBundle(body, bundle)
	if err != nil {
		return nil, &refusal{fmt.Errorf("%s: %w", planPath, err)}
	}
	if filled && len(sign.sigFiles) > 0 {
		return nil, &refusal{fmt.Errorf("%s leaves bundle: out, and a --signature made elsewhere signed the file as it is: add bundle: %s to it and sign it again", planPath, bundle)}
	}
	p, err := rollout.DecodePlan(body)
	if err != nil {
		return nil, &refusal{fmt.Errorf("%s: %w", planPath, err)}
	}
	if p.Bundle != bundle {
		return nil, &refusal{fmt.Errorf("%s names bundle %s, but the bundle published is %s (set bundle: to it)", planPath, p.Bundle, bundle)}
	}
	sigs, err := sign.sign(e, body)
	if err != nil {
		return nil, err
	}
	return rollout.SignPlan(body, sigs), nil
}

// publishPlan starts a signed rollout plan at the local agent.
func publishPlan(e *env, socket, planPath string, d *rollout.Document) error {
	st, err := postDoc(socket, "/v1/rollouts", d)
	if err != nil {
		return fmt.Errorf("%s: %w", planPath, err)
	}
	if st.State != rollout.Running {
		// The agent followed this plan already: say where it stands.
		fmt.Fprintf(e.stdout, "rollout %s (plan %s) is already %s: %s\n", safetext.String(st.ID), st.Digest, st.State, safetext.String(st.Why))
		return nil
	}
	fmt.Fprintf(e.stdout, "rollout %s started (plan %s): %s\n", safetext.String(st.ID), st.Digest, safetext.String(st.Why))
	return nil
}

func newRolloutCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Canary rollouts: list, status, and signed operator commands",
		Long: `A rollout takes a bundle through the fleet in the stages of a signed plan
(publish --plan). Every agent judges the stages by itself from the same
gossip state. Operator commands are signed like plans and carry a sequence
number that is used once: promote opens the next stage now, pause and
resume stop and restart new applies, halt stops for good, revoke stops and
rolls the patch back everywhere.`,
		Example: `  splicefleet rollout list
  splicefleet rollout status cve-2026-1234-web --watch
  splicefleet rollout promote cve-2026-1234-web --key release.sec.asc --key security.sec.asc`,
	}
	var socket string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the rollouts as the local agent judges them",
		Example: `  splicefleet rollout list
  splicefleet rollout list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var sts []rollout.Status
			if err := agent.NewControlClient(socket).Do("GET", "/v1/rollouts", nil, &sts); err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, sts)
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ROLLOUT\tPLAN\tSTATE\tSTAGE\tHEALTHY\tFAILED\tWHY")
			for _, st := range sts {
				s := st.Stages[st.Open]
				fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d %s\t%d/%d\t%d\t%s\n", safetext.String(st.ID), st.Digest[:12], st.State, st.Open+1, len(st.Stages), safetext.String(s.Name),
					s.Healthy, s.Cohort, len(st.Failed), safetext.String(st.Why))
			}
			return w.Flush()
		},
	}
	socketFlag(e, list, &socket)
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	cmd.AddCommand(list, newStatusCmd(e))
	for _, action := range rollout.Actions {
		cmd.AddCommand(newCommandCmd(e, action))
	}
	return cmd
}

// actionExamples are the examples of each operator command.
var actionExamples = map[string]string{
	rollout.ActionPromote: `  splicefleet rollout promote cve-2026-1234-web --key release.sec.asc --key security.sec.asc
  splicefleet rollout promote cve-2026-1234-web --stage 3 --key release.sec.asc --reason "canaries soaked overnight"`,
	rollout.ActionPause: `  splicefleet rollout pause cve-2026-1234-web --key ops.sec.asc --reason "change freeze"
  splicefleet rollout pause cve-2026-1234-web --reason "change freeze" --body-out pause.cmd
  # gpg --armor --detach-sign pause.cmd, on the signer's machine, then:
  splicefleet rollout pause cve-2026-1234-web --body pause.cmd --signature pause.cmd.asc`,
	rollout.ActionResume: `  splicefleet rollout resume cve-2026-1234-web --key ops.sec.asc`,
	rollout.ActionHalt:   `  splicefleet rollout halt cve-2026-1234-web --key ops.sec.asc --reason "latency regression on the canaries"`,
	rollout.ActionRevoke: `  splicefleet rollout revoke cve-2026-1234-web --key release.sec.asc --key security.sec.asc --reason "oops in tcp_sendmsg"`,
}

var actionHelp = map[string]string{
	rollout.ActionPromote: "Open the next stage now (or --stage N), without waiting for its soak; on a paused rollout, at resume",
	rollout.ActionPause:   "Stop new applies and stage openings until resume",
	rollout.ActionResume:  "Undo a pause (a halted or revoked rollout refuses it: a halt is final)",
	rollout.ActionHalt:    "Stop a running rollout for good; hosts keep what they applied (a done rollout refuses it: revoke that)",
	rollout.ActionRevoke:  "Stop the rollout for good and roll the patch back on every host",
}

func newCommandCmd(e *env, action string) *cobra.Command {
	var socket, reason, bodyIn, bodyOut string
	var sign docSigning
	var seq uint64
	var stage int
	cmd := &cobra.Command{
		Use:   action + " ROLLOUT --key SECRET.asc",
		Short: actionHelp[action],
		Long: actionHelp[action] + `.

The command is signed (--key, several for a threshold) and sent to the
local agent, which verifies it and gossips it to the fleet. Its sequence
number is the rollout's last one plus one unless --seq says otherwise; a
number already used is refused.

To sign elsewhere (GnuPG, another signer's machine): --body-out FILE writes
the command's exact bytes and sends nothing; sign FILE with a detached
signature, then send it with --body FILE --signature FILE.asc (and more
--signature or --key for a threshold).`,
		Example: actionExamples[action],
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st rollout.Status
			if err := agent.NewControlClient(socket).Do("GET", "/v1/rollouts/"+args[0], nil, &st); err != nil {
				return err
			}
			c := rollout.Command{Plan: st.Digest, Seq: seq, Action: action, Reason: reason, Issued: e.now().UTC()}
			if c.Seq == 0 {
				c.Seq = st.LastSeq + 1
			}
			if action == rollout.ActionPromote {
				c.Stage = st.Open + 1
				if cmd.Flags().Changed("stage") {
					if stage < 2 || stage > len(st.Stages) {
						return &refusal{fmt.Errorf("--stage %d: rollout %s has stages 1 to %d, and stage 1 opens when it starts: promote opens stages 2 to %d", stage, st.ID, len(st.Stages), len(st.Stages))}
					}
					c.Stage = stage - 1
				}
				if c.Stage >= len(st.Stages) {
					return &refusal{fmt.Errorf("rollout %s is at its last stage; nothing to promote", st.ID)}
				}
			}
			// What the rollout's end leaves without effect is refused
			// before anything is signed or written; every agent checks it
			// again. (A command given with --body is checked once it is
			// known to be this one.)
			if err := rollout.CheckCommand(st, action); err != nil && bodyIn == "" {
				return &refusal{err}
			}
			body, err := rollout.EncodeCommand(c)
			if err != nil {
				return &refusal{err}
			}
			if bodyOut != "" {
				if err := os.WriteFile(bodyOut, body, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "wrote %s %s (seq %d) to %s; sign it (gpg --armor --detach-sign %s), then send it:\n  splicefleet rollout %s %s --body %s --signature %s.asc\n",
					action, st.ID, c.Seq, bodyOut, bodyOut, action, args[0], bodyOut, bodyOut)
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
				if given.Plan != st.Digest || given.Action != action {
					return &refusal{fmt.Errorf("%s is a %s of plan %.12s, not a %s of rollout %s (plan %.12s)", bodyIn, given.Action, given.Plan, action, st.ID, st.Digest)}
				}
				c = *given
				if err := rollout.CheckCommand(st, action); err != nil {
					return &refusal{err}
				}
			}
			sigs, err := sign.sign(e, body)
			if err != nil {
				return err
			}
			st, err = postDoc(socket, "/v1/commands", &rollout.Document{Kind: rollout.KindCommand, Body: body, Signatures: sigs})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s %s (seq %d): %s\n", action, safetext.String(st.ID), c.Seq, safetext.String(st.Why))
			if note := rollout.PromoteNote(st); action == rollout.ActionPromote && note != "" {
				fmt.Fprintf(e.stdout, "note: %s\n", note)
			}
			return nil
		},
	}
	socketFlag(e, cmd, &socket)
	sign.flags(cmd, "the command")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the people reading the status")
	cmd.Flags().StringVar(&bodyOut, "body-out", "", "write the command's bytes to FILE for signing elsewhere, and send nothing")
	cmd.Flags().StringVar(&bodyIn, "body", "", "send the command in FILE (made by --body-out) with its --signature(s)")
	cmd.MarkFlagsMutuallyExclusive("body", "body-out")
	cmd.Flags().Uint64Var(&seq, "seq", 0, "sequence number (default: the last one plus one)")
	if action == rollout.ActionPromote {
		cmd.Flags().IntVar(&stage, "stage", 0, "the stage to open, 1-based (default: the next one)")
	}
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printStatus renders one rollout for people. Its ids, names and
// reasons come from signed plans and from other hosts, and are escaped.
func printStatus(out io.Writer, st rollout.Status) {
	q := safetext.String
	fmt.Fprintf(out, "rollout %s (plan %s, bundle %s)\n", q(st.ID), q(st.Digest[:12]), q(st.Bundle[:12]))
	fmt.Fprintf(out, "state:   %s (on halt: %s)\n", q(st.State), q(st.OnHalt))
	fmt.Fprintf(out, "why:     %s\n", q(st.Why))
	if st.Self.Targeted {
		fmt.Fprintf(out, "this host: stage %d, bucket %d, %s\n", st.Self.Stage+1, st.Self.Bucket, st.Self.State)
	} else {
		fmt.Fprintln(out, "this host: not targeted")
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nSTAGE\tOPEN\tCOHORT\tAPPLIED\tHEALTHY\tFAILED\tWAITING\tNOTE")
	for i, s := range st.Stages {
		note := strings.Join(safetext.Strings(s.WaitingFor), ", ")
		if !s.OpensAt.IsZero() && !s.Open {
			note = "opens at " + s.OpensAt.UTC().Format("15:04:05")
		}
		open := "no"
		if s.Open {
			open = "yes"
		}
		fmt.Fprintf(w, "%d %s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", i+1, q(s.Name), open, s.Cohort, s.Applied, s.Healthy, s.Failed, s.Waiting, note)
	}
	_ = w.Flush()
	for _, f := range st.Failed {
		fmt.Fprintf(out, "failed: %s\n", q(f))
	}
	for _, f := range st.Regressed {
		fmt.Fprintf(out, "regressed: %s\n", q(f))
	}
}
