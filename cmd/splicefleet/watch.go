package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/internal/safetext"
	"github.com/splicefleet/splicefleet/rollout"
)

// exitTimeout is rollout status --watch's exit code when --timeout passed
// before the rollout ended.
const exitTimeout = 3

// exitStatus makes a command exit with code, printing err.
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string { return e.err.Error() }
func (e *exitStatus) Unwrap() error { return e.err }

// rolloutExit is the exit status a rollout's state gives rollout status:
// nil for running, paused and done; exit 1 for a rollout that ended
// without finishing (halted, rolled back, revoked, expired).
func rolloutExit(st rollout.Status) error {
	if rollout.Ended(st.State) || st.State == rollout.Expired {
		return &exitStatus{exitRefused, fmt.Errorf("rollout %s is %s: %s", safetext.String(st.ID), st.State, safetext.String(st.Why))}
	}
	return nil
}

// statusExits are rollout status's exit codes, in its help and its man
// page.
var statusExits = []exitCode{
	{exitOK, "the rollout is running, paused or done (with --watch: done)"},
	{exitRefused, "the rollout halted, rolled back, was revoked or expired"},
	{exitError, "usage error, or the agent could not be asked (with --watch: at the first request; later failures are retried until --timeout)"},
	{exitTimeout, "with --watch: --timeout passed before the rollout ended"},
}

var statusExitCodes = "Exit status:\n" + exitCodeLines(statusExits)

func newStatusCmd(e *env) *cobra.Command {
	var socket string
	var asJSON, watch bool
	var timeout, interval time.Duration
	cmd := &cobra.Command{
		Use:   "status ROLLOUT [--json] [--watch [--timeout D]]",
		Short: "Each stage of a rollout with its cohort, applied, healthy, failed and waiting hosts, and why it is where it is",
		Long: `Show each stage of a rollout as the local agent judges it: its cohort and
the hosts that applied, are healthy, failed or are still waited for, and
why the rollout is where it is.

With --watch, follow the rollout: print it again each time it changes
(with --json, one JSON object per line) until it is done, halts, rolls
back, is revoked or expires, or until --timeout passes. The exit status
says how it ended, so a pipeline can wait on a rollout:

` + statusExitCodes,
		Example: `  splicefleet rollout status cve-2026-1234-web
  splicefleet rollout status cve-2026-1234-web --watch --timeout 4h || echo "not done: $?"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := agent.NewControlClient(socket)
			get := func() (rollout.Status, error) {
				var st rollout.Status
				err := c.Do("GET", "/v1/rollouts/"+args[0], nil, &st)
				return st, err
			}
			st, err := get()
			if err != nil {
				return err
			}
			if !watch {
				if asJSON {
					if err := printJSON(e.stdout, st); err != nil {
						return err
					}
				} else {
					printStatus(e.stdout, st)
				}
				return rolloutExit(st)
			}
			if cmd.Flags().Changed("timeout") && timeout <= 0 {
				return errors.New("--timeout must be positive (leave it out to wait for as long as it takes)")
			}
			if interval <= 0 {
				return errors.New("--interval must be positive")
			}
			ctx, cancel := signalContext()
			defer cancel()
			if timeout > 0 {
				var stop context.CancelFunc
				ctx, stop = context.WithTimeout(ctx, timeout)
				defer stop()
			}
			return watchRollout(ctx, e, get, st, asJSON, interval, timeout)
		},
	}
	socketFlag(e, cmd, &socket)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (with --watch, one object per line)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the rollout until it ends; the exit status says how")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --watch, give up after this long (exit 3); default: no limit")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "with --watch, how often to ask the agent")
	return cmd
}

// watchRollout prints st, then every change of the rollout, until it is
// done (nil), ended otherwise (exit 1) or ctx ends (exit 3, or the
// interruption). An agent that cannot be asked is retried.
func watchRollout(ctx context.Context, e *env, get func() (rollout.Status, error), st rollout.Status, asJSON bool, interval, timeout time.Duration) error {
	show := func(st rollout.Status) error {
		if asJSON {
			return json.NewEncoder(e.stdout).Encode(st)
		}
		fmt.Fprintf(e.stdout, "--- %s\n", e.now().UTC().Format(time.TimeOnly))
		printStatus(e.stdout, st)
		return nil
	}
	if err := show(st); err != nil {
		return err
	}
	var failing error
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if st.State == rollout.Done {
			return nil
		}
		if err := rolloutExit(st); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return &exitStatus{exitTimeout, fmt.Errorf("rollout %s is still %s after %s: %s", safetext.String(st.ID), st.State, timeout, safetext.String(st.Why))}
			}
			return ctx.Err()
		case <-tick.C:
		}
		next, err := get()
		if err != nil {
			if failing == nil {
				fmt.Fprintf(e.stderr, "splicefleet: %v (retrying)\n", err)
			}
			failing = err
			continue
		}
		failing = nil
		if !reflect.DeepEqual(next, st) {
			if err := show(next); err != nil {
				return err
			}
		}
		st = next
	}
}
